namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>sigmoid</c> on a quantized tensor (the float <c>nn.Sigmoid</c> module or <c>torch.sigmoid</c>,
/// which PyTorch 1.13's eager convert leaves in place: <c>nn.Sigmoid</c> is in neither its static mapping nor its
/// propagation list): y = 1 / (1 + exp(−x)) in float32 (see <see cref="QuantizedActivation"/>), quantized to the fixed
/// output qparams of PyTorch's <c>sigmoid_quantized_cpu</c>: scale 1/256 with zero point 0 for quint8, -128 for qint8.
/// PyTorch's vectorised exp (Sleef) and its scalar tail's float64 sum may differ from <see cref="MathF.Exp"/> in the last
/// bit, which can move an output lying on a rounding boundary by one step.</summary>
public sealed class QuantizedSigmoid() : QuantizedActivation("quantized Sigmoid", QuantizedHardsigmoid.OutputScale, 0)
{
    private protected override float Apply(float x) => 1f / (1f + MathF.Exp(-x));

    private protected override long ZeroPointFor(QuantizedDType dtype) => QuantizedHardsigmoid.UnitIntervalZeroPoint(dtype);
}
