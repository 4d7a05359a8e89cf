namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's quantized <c>ReLU</c> (<c>torch.nn.functional.relu</c> on a quantized tensor): every value below
/// the zero point becomes the zero point; qparams, dtype and shape are kept.</summary>
public sealed class QuantizedReLU
{
    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor.</param>
    /// <returns>max(q, zero_point), element by element, with the input's qparams.</returns>
    /// <exception cref="ArgumentException">The input is per channel.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized ReLU");
        var y = input.IntRepr();
        int zp = (int)input.ZeroPoint;
        for (int i = 0; i < y.Length; i++) y[i] = Math.Max(y[i], zp);
        return QuantizedTensor.Adopt(y, (int[])input.RawShape.Clone(), input.Scale, input.ZeroPoint, input.DType);
    }
}
