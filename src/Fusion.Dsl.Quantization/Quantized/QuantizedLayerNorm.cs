using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.LayerNorm</c> (what eager convert makes of an observed <c>nn.LayerNorm</c>), as
/// PyTorch 1.13's <c>quantized_normalize</c> kernel computes it: each group of the last dimensions (<c>normalized_shape</c>)
/// is normalised from the integer sums of its values q and their squares, in float32 —
/// m = (float)Σq / n, mean = m − x_zp, var = max((float)Σq² / n − m², 0), k = (float)(x_scale / sqrt(var·x_scale·x_scale + eps))
/// (the square root taken in float64) — then y = ((q − x_zp) − mean)·k·gamma + beta, quantized to the module's scale and
/// zero point in the input's dtype.
/// </summary>
public sealed class QuantizedLayerNorm
{
    private readonly float[]? _weight, _bias;

    /// <summary>Creates the module.</summary>
    /// <param name="normalizedShape">The trailing dimensions normalised together, each at least 1.</param>
    /// <param name="weight">The float32 weight of <paramref name="normalizedShape"/>, or null without elementwise affine.</param>
    /// <param name="bias">The float32 bias of <paramref name="normalizedShape"/>, or null.</param>
    /// <param name="eps">The epsilon added to the variance: finite and not negative.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
    /// <exception cref="ArgumentException">An empty or non-positive shape, a weight or bias of another shape or dtype, a bad eps or scale.</exception>
    public QuantizedLayerNorm(int[] normalizedShape, Tensor? weight, Tensor? bias, double eps, double scale, long zeroPoint)
    {
        ArgumentNullException.ThrowIfNull(normalizedShape);
        if (normalizedShape.Length == 0 || normalizedShape.Any(d => d < 1))
            throw new ArgumentException($"quantized LayerNorm: normalized_shape must be one or more positive sizes, got {Tensor.ShapeString(normalizedShape)}", nameof(normalizedShape));
        float[]? Affine(Tensor? t, string what)
        {
            if (t is null) return null;
            if (t.DType != DType.Float32 || !t.Shape.SequenceEqual(normalizedShape))
                throw new ArgumentException($"quantized LayerNorm: the {what} must be float32 of shape {Tensor.ShapeString(normalizedShape)}, got {t.DType} {Tensor.ShapeString(t.Shape)}", what);
            return t.Float32.ToArray();
        }
        (_weight, _bias) = (Affine(weight, "weight"), Affine(bias, "bias"));
        if (!(eps >= 0) || !double.IsFinite(eps)) throw new ArgumentException($"quantized LayerNorm: eps must be finite and not negative, got {eps}", nameof(eps));
        NormalizedShape = [.. normalizedShape];
        Weight = weight;
        Bias = bias;
        Eps = eps;
        Scale = QuantizedChecks.Scale(scale, "quantized LayerNorm output");
        ZeroPoint = zeroPoint;
    }

    /// <summary>The trailing dimensions normalised together.</summary>
    public ImmutableArray<int> NormalizedShape { get; }

    /// <summary>The float32 weight, or null.</summary>
    public Tensor? Weight { get; }

    /// <summary>The float32 bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The epsilon added to the variance.</summary>
    public double Eps { get; }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>PyTorch's normalisation constants of one group of integers: its mean in input steps less the zero point,
    /// and x_scale / sqrt(var + eps) — from exact integer sums, the moments in float32, the square root in float64.</summary>
    internal static (float Mean, float Factor) Moments(ReadOnlySpan<int> q, float xScale, float xZero, double eps)
    {
        long sum = 0, squares = 0;
        foreach (var v in q) { sum += v; squares += (long)v * v; }
        float shiftedMean = (float)sum / q.Length;
        float variance = MathF.Max((float)squares / q.Length - shiftedMean * shiftedMean, 0f);
        return (shiftedMean - xZero, (float)(xScale / Math.Sqrt(variance * xScale * xScale + eps)));
    }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor whose last dimensions are <see cref="NormalizedShape"/>.</param>
    /// <returns>A tensor of the input's shape and dtype with the module's qparams.</returns>
    /// <exception cref="ArgumentException">A per-channel input, trailing dimensions other than the normalised shape, or an
    /// output zero point outside the input's dtype.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        const string name = "quantized LayerNorm";
        QuantizedChecks.PerTensorInput(input, input.DType, name);
        QuantizedChecks.ZeroPoint(ZeroPoint, input.DType, name + " output");
        int k = NormalizedShape.Length;
        if (input.Rank < k || !input.Dimensions[^k..].SequenceEqual(NormalizedShape))
            throw new ArgumentException($"{name} normalises the trailing dimensions {Tensor.ShapeString([.. NormalizedShape])}, got an input of shape {Tensor.ShapeString(input.RawShape)}", nameof(input));
        var q = input.IntRepr();
        int n = NormalizedShape.Aggregate(1, (a, b) => a * b);
        float xScale = (float)input.Scale, xZero = input.ZeroPoint, inverse = 1f / (float)Scale;
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        for (int start = 0; start < q.Length; start += n)
        {
            var (mean, k1) = Moments(q.AsSpan(start, n), xScale, xZero, Eps);
            for (int j = 0; j < n; j++)
            {
                float y = ((q[start + j] - xZero) - mean) * k1;
                if (_weight is not null) y *= _weight[j];
                if (_bias is not null) y += _bias[j];
                q[start + j] = QuantizedTensor.QuantizeValue(y, inverse, ZeroPoint, qmin, qmax);
            }
        }
        return QuantizedTensor.Adopt(q, (int[])input.RawShape.Clone(), Scale, ZeroPoint, input.DType);
    }
}
