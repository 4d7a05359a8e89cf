using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.GroupNorm</c> (what eager convert makes of an observed <c>nn.GroupNorm</c>), as
/// PyTorch 1.13's <c>quantized_normalize</c> kernel computes it with per-channel affine: on an input [N, C, *], each group
/// of C / groups channels is normalised from the integer sums of its values q and their squares as
/// <see cref="QuantizedLayerNorm"/> is (float32 moments, k = (float)(x_scale / sqrt(var·x_scale² + eps))), then per channel
/// g = k·gamma[c] and y = ((q − x_zp) − mean)·g + beta[c] in float32, quantized to the module's scale and zero point in the
/// input's dtype.
/// </summary>
public sealed class QuantizedGroupNorm
{
    private readonly float[]? _weight, _bias;

    /// <summary>Creates the module.</summary>
    /// <param name="numGroups">The number of groups, at least 1, dividing the channels.</param>
    /// <param name="numChannels">The channels C, at least 1.</param>
    /// <param name="weight">The float32 weight [C], or null without affine.</param>
    /// <param name="bias">The float32 bias [C], or null.</param>
    /// <param name="eps">The epsilon added to the variance: finite and not negative.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against each input's dtype.</param>
    /// <exception cref="ArgumentException">Groups that do not divide the channels, parameters of another shape, a bad eps or scale.</exception>
    public QuantizedGroupNorm(int numGroups, int numChannels, Tensor? weight, Tensor? bias, double eps, double scale, long zeroPoint)
    {
        if (numGroups < 1 || numChannels < 1 || numChannels % numGroups != 0)
            throw new ArgumentException($"quantized GroupNorm: num_groups ({numGroups}) must be positive and divide the {numChannels} channels", nameof(numGroups));
        float[]? Affine(Tensor? t, string what)
        {
            if (t is null) return null;
            if (t.DType != DType.Float32 || t.Rank != 1 || t.Count != numChannels)
                throw new ArgumentException($"quantized GroupNorm: the {what} must be float32 of shape [{numChannels}], got {t.DType} {Tensor.ShapeString(t.Shape)}", what);
            return t.Float32.ToArray();
        }
        (_weight, _bias) = (Affine(weight, "weight"), Affine(bias, "bias"));
        if (!(eps >= 0) || !double.IsFinite(eps)) throw new ArgumentException($"quantized GroupNorm: eps must be finite and not negative, got {eps}", nameof(eps));
        NumGroups = numGroups;
        NumChannels = numChannels;
        Weight = weight;
        Bias = bias;
        Eps = eps;
        Scale = QuantizedChecks.Scale(scale, "quantized GroupNorm output");
        ZeroPoint = zeroPoint;
    }

    /// <summary>The number of groups.</summary>
    public int NumGroups { get; }

    /// <summary>The channels C.</summary>
    public int NumChannels { get; }

    /// <summary>The float32 weight [C], or null.</summary>
    public Tensor? Weight { get; }

    /// <summary>The float32 bias [C], or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The epsilon added to the variance.</summary>
    public double Eps { get; }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor [N, C, *spatial] of rank 3 or more.</param>
    /// <returns>A tensor of the input's shape and dtype with the module's qparams.</returns>
    /// <exception cref="ArgumentException">A per-channel input, a rank below 3, another channel count, or an output zero point outside the input's dtype.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        const string name = "quantized GroupNorm";
        QuantizedChecks.PerTensorInput(input, input.DType, name);
        QuantizedChecks.ZeroPoint(ZeroPoint, input.DType, name + " output");
        // PyTorch's quantized group_norm refuses an input without a spatial dimension ("at least 3-dimensional").
        if (input.Rank < 3 || input.Size(1) != NumChannels)
            throw new ArgumentException($"{name} expects input of shape [N, {NumChannels}, *spatial] with at least one spatial dimension, got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        var q = input.IntRepr();
        int perGroup = NumChannels / NumGroups, plane = input.Count == 0 ? 0 : input.Count / (input.Size(0) * NumChannels), n = perGroup * plane;
        float xScale = (float)input.Scale, xZero = input.ZeroPoint, inverse = 1f / (float)Scale;
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        for (int start = 0, group = 0; n > 0 && start < q.Length; start += n, group++)
        {
            var (mean, k) = QuantizedLayerNorm.Moments(q.AsSpan(start, n), xScale, xZero, Eps);
            for (int ch = 0; ch < perGroup; ch++)
            {
                // PyTorch folds the channel's weight into the normalisation factor before the loop over its elements.
                int c = (group * perGroup + ch) % NumChannels;
                float g = k * (_weight is null ? 1f : _weight[c]), beta = _bias is null ? 0f : _bias[c];
                for (int j = ch * plane; j < (ch + 1) * plane; j++)
                    q[start + j] = QuantizedTensor.QuantizeValue(((q[start + j] - xZero) - mean) * g + beta, inverse, ZeroPoint, qmin, qmax);
            }
        }
        return QuantizedTensor.Adopt(q, (int[])input.RawShape.Clone(), Scale, ZeroPoint, input.DType);
    }
}
