namespace Fusion.Dsl.Quantization;

/// <summary>The shape of PyTorch's element-wise quantized activation kernels (hardswish, hardsigmoid): dequantize each
/// element in float32 as (q - zp)·scale, apply the float function, quantize to the output qparams as
/// <c>quantize_val</c> does, in the input's dtype.</summary>
internal static class QuantizedElementwise
{
    /// <summary>The input mapped through <paramref name="f"/> to a tensor of the same shape with the given qparams.</summary>
    public static QuantizedTensor Map(QuantizedTensor input, Func<float, float> f, double scale, long zeroPoint)
    {
        float inScale = (float)input.Scale, inverse = 1f / (float)scale;
        long inZero = input.ZeroPoint;
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        var y = input.IntRepr();
        for (int i = 0; i < y.Length; i++)
            y[i] = QuantizedTensor.QuantizeValue(f((float)(y[i] - inZero) * inScale), inverse, zeroPoint, qmin, qmax);
        return QuantizedTensor.Adopt(y, (int[])input.RawShape.Clone(), scale, zeroPoint, input.DType);
    }
}
