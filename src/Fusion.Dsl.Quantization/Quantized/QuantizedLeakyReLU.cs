namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.ao.nn.quantized.LeakyReLU</c> (what eager convert makes of an observed <c>nn.LeakyReLU</c>):
/// y = x where x &gt; 0, else x·slope, the slope narrowed to float32 as PyTorch's <c>leaky_qrelu</c> kernel takes it
/// (see <see cref="QuantizedActivation"/> for the quantization around it).</summary>
public sealed class QuantizedLeakyReLU : QuantizedActivation
{
    private readonly float _slope;

    /// <summary>Creates the module.</summary>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
    /// <param name="negativeSlope">The slope for negative inputs (PyTorch's <c>negative_slope</c>): finite.</param>
    /// <exception cref="ArgumentException">The scale is not positive and finite, or the slope is not finite.</exception>
    public QuantizedLeakyReLU(double scale, long zeroPoint, double negativeSlope = 0.01) : base("quantized LeakyReLU", scale, zeroPoint)
    {
        if (!double.IsFinite(negativeSlope))
            throw new ArgumentException($"quantized LeakyReLU: negative_slope must be finite, got {negativeSlope}", nameof(negativeSlope));
        NegativeSlope = negativeSlope;
        _slope = (float)negativeSlope;
    }

    /// <summary>The slope for negative inputs.</summary>
    public double NegativeSlope { get; }

    private protected override float Apply(float x) => x > 0 ? x : x * _slope;
}
