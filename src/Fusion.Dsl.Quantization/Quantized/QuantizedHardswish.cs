namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.ao.nn.quantized.Hardswish</c> (what eager convert makes of an observed <c>nn.Hardswish</c>,
/// as in torchvision's mobilenet_v3): y = x·min(max(x + 3, 0), 6) / 6 (see <see cref="QuantizedActivation"/> for the
/// quantization around it). PyTorch 1.13's AVX2 kernel dequantizes its full vectors with a fused multiply-add and the
/// rest as written here; on 153,839 random elements both gave PyTorch's integers exactly (measured with the Python oracle).</summary>
/// <param name="scale">The output scale: positive and finite.</param>
/// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
/// <exception cref="ArgumentOutOfRangeException">The scale is not positive and finite.</exception>
public sealed class QuantizedHardswish(double scale, long zeroPoint) : QuantizedActivation("quantized Hardswish", scale, zeroPoint)
{
    private protected override float Apply(float x) => x * MathF.Min(MathF.Max(x + 3f, 0f), 6f) / 6f;
}
