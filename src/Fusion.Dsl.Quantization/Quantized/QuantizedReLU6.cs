namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.ao.nn.quantized.ReLU6</c> (what eager convert makes of an observed <c>nn.ReLU6</c>, and
/// <c>F.relu6</c> on a quantized tensor): PyTorch's quantized clamp to [0, 6], each bound quantized with the input's
/// qparams as <c>quantize_val</c> does and every integer clamped between them; qparams, dtype and shape are kept (the
/// observer PyTorch puts on ReLU6 sets nothing).</summary>
public sealed class QuantizedReLU6
{
    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor.</param>
    /// <returns>clamp(q, quantize(0), quantize(6)), element by element, with the input's qparams.</returns>
    /// <exception cref="ArgumentException">The input is per channel.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized ReLU6");
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        float inverse = 1f / (float)input.Scale;
        int lo = QuantizedTensor.QuantizeValue(0f, inverse, input.ZeroPoint, qmin, qmax);
        int hi = QuantizedTensor.QuantizeValue(6f, inverse, input.ZeroPoint, qmin, qmax);
        var y = input.IntRepr();
        for (int i = 0; i < y.Length; i++) y[i] = Math.Clamp(y[i], lo, hi);
        return QuantizedTensor.Adopt(y, (int[])input.RawShape.Clone(), input.Scale, input.ZeroPoint, input.DType);
    }
}
