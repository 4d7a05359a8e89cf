namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>hardsigmoid</c> on a quantized tensor (the float <c>nn.Hardsigmoid</c> module or
/// <c>F.hardsigmoid</c>, which eager convert leaves in place, as in the squeeze-excitation of torchvision's
/// mobilenet_v3): y = min(max(x + 3, 0), 6) / 6 (see <see cref="QuantizedActivation"/>), quantized to PyTorch's fixed
/// output qparams: scale 1/256 with zero point 0 for quint8, -128 for qint8 (its output covers [0, 1]).</summary>
public sealed class QuantizedHardsigmoid() : QuantizedActivation("quantized Hardsigmoid", OutputScale, 0)
{
    /// <summary>The output scale PyTorch fixes: 1/256.</summary>
    public const double OutputScale = 1.0 / 256.0;

    private protected override float Apply(float x) => MathF.Min(MathF.Max(x + 3f, 0f), 6f) / 6f;

    private protected override long ZeroPointFor(QuantizedDType dtype) => UnitIntervalZeroPoint(dtype);

    /// <summary>PyTorch's zero point for an output in [0, 1] at scale 1/256: 0 for quint8, -128 for qint8.</summary>
    internal static long UnitIntervalZeroPoint(QuantizedDType dtype) => dtype == QuantizedDType.QInt8 ? -128 : 0;
}
