namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>hardsigmoid</c> on a quantized tensor (the float <c>nn.Hardsigmoid</c> module or
/// <c>F.hardsigmoid</c>, which eager convert leaves in place, as in the squeeze-excitation of torchvision's
/// mobilenet_v3): each element dequantized in float32, y = min(max(x + 3, 0), 6) / 6, quantized to PyTorch's fixed
/// output qparams: scale 1/256 with zero point 0 for quint8, -128 for qint8 (its output covers [0, 1]).</summary>
public sealed class QuantizedHardsigmoid
{
    /// <summary>The output scale PyTorch fixes: 1/256.</summary>
    public const double OutputScale = 1.0 / 256.0;

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor.</param>
    /// <exception cref="ArgumentException">A per-channel input.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized Hardsigmoid");
        long zeroPoint = input.DType == QuantizedDType.QInt8 ? -128 : 0;
        return QuantizedElementwise.Map(input, x => MathF.Min(MathF.Max(x + 3f, 0f), 6f) / 6f, OutputScale, zeroPoint);
    }
}
