namespace Fusion.Dsl.Quantization;

/// <summary>
/// The shape PyTorch's quantized element-wise activations share (<c>Hardswish</c>, <c>LeakyReLU</c>, <c>ELU</c> with
/// their own output qparams; <c>hardsigmoid</c> and <c>sigmoid</c> with PyTorch's fixed ones): each element dequantized
/// in float32, x = (q - zp)·scale, passed through the float function, quantized to the output scale and zero point in
/// the input's dtype (see <see cref="QuantizedElementwise"/>). A subclass is its function and its name, and its zero
/// point per dtype where PyTorch fixes one.
/// </summary>
public abstract class QuantizedActivation
{
    private readonly string _name;

    /// <summary>Checks the output qparams that do not depend on the input.</summary>
    /// <param name="name">The module's name in messages (<c>quantized ELU</c>).</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
    /// <exception cref="ArgumentOutOfRangeException">The scale is not positive and finite.</exception>
    private protected QuantizedActivation(string name, double scale, long zeroPoint)
    {
        _name = name;
        Scale = QuantizedChecks.Scale(scale, name + " output");
        ZeroPoint = zeroPoint;
    }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>The float function, in float32 as PyTorch's kernel computes it.</summary>
    private protected abstract float Apply(float x);

    /// <summary>The output zero point for an input of <paramref name="dtype"/>: <see cref="ZeroPoint"/>, unless PyTorch
    /// fixes one per dtype.</summary>
    private protected virtual long ZeroPointFor(QuantizedDType dtype) => ZeroPoint;

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor.</param>
    /// <returns>A tensor of the input's shape and dtype with this module's qparams.</returns>
    /// <exception cref="ArgumentException">A per-channel input, or an output zero point outside its dtype.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, _name);
        var zeroPoint = ZeroPointFor(input.DType);
        QuantizedChecks.ZeroPoint(zeroPoint, input.DType, _name + " output");
        return QuantizedElementwise.Map(input, Apply, Scale, zeroPoint);
    }
}
