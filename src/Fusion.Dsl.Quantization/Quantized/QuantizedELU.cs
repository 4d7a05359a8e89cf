namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.ao.nn.quantized.ELU</c> (what eager convert makes of an observed <c>nn.ELU</c>): y = x where
/// x &gt; 0, else (exp(x) − 1)·alpha, alpha narrowed to float32 as PyTorch's <c>qelu</c> kernel takes it (see
/// <see cref="QuantizedActivation"/> for the quantization around it). PyTorch's vectorised exp (Sleef, within 1 ulp) and
/// <see cref="MathF.Exp"/> may differ in the last bit, which can move an output lying on a rounding boundary by one step.</summary>
public sealed class QuantizedELU : QuantizedActivation
{
    private readonly float _alpha;

    /// <summary>Creates the module.</summary>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
    /// <param name="alpha">The scale of the negative part (PyTorch's <c>alpha</c>): finite.</param>
    /// <exception cref="ArgumentException">The scale is not positive and finite, or alpha is not finite.</exception>
    public QuantizedELU(double scale, long zeroPoint, double alpha = 1.0) : base("quantized ELU", scale, zeroPoint)
    {
        if (!double.IsFinite(alpha)) throw new ArgumentException($"quantized ELU: alpha must be finite, got {alpha}", nameof(alpha));
        Alpha = alpha;
        _alpha = (float)alpha;
    }

    /// <summary>The scale of the negative part.</summary>
    public double Alpha { get; }

    private protected override float Apply(float x) => x > 0 ? x : (MathF.Exp(x) - 1f) * _alpha;
}
