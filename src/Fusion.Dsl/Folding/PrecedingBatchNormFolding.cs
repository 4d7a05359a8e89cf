using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Folding;

/// <summary>
/// Folds an eval-mode BatchNorm into the layer <em>after</em> it (PyTorch has no such fusion). The BatchNorm is a per-input-channel
/// affine map <c>x ↦ a·x + t</c> with <c>a = gamma / sqrt(running_var + eps)</c> and <c>t = beta - running_mean · a</c>; the layer
/// then computes <c>W(a·x + t) + c = (W·diag(a)) x + (W t + c)</c>: every weight entry reading input channel <c>i</c> is scaled by
/// <c>a[i]</c> and the bias gains the layer applied to <c>t</c>. Factors and the bias sums are computed in float64 and rounded to
/// float32 once. The inputs are never changed; the layer keeps its hyperparameters, training flag and hooks, and gains a bias.
/// </summary>
public static class PrecedingBatchNormFolding
{
    /// <summary>
    /// Folds <paramref name="bn"/> (a BatchNorm1d over <c>[N, features]</c>) into the following Linear layer:
    /// <c>W'[o, i] = W[o, i] · a[i]</c>, <c>c'[o] = c[o] + Σᵢ W[o, i] · t[i]</c>.
    /// </summary>
    /// <remarks>The fold assumes the BatchNorm's features are the Linear's inputs, i.e. a 2-D input <c>[N, features]</c>. On a 3-D
    /// input <c>[N, C, L]</c> BatchNorm1d normalises dimension 1 while Linear reads dimension 2; both sizes then equal
    /// <c>num_features</c>, and the fold would mix them up.</remarks>
    /// <exception cref="InvalidOperationException">Either module is in training mode.</exception>
    /// <exception cref="ArgumentException">The BatchNorm has no running statistics, or <c>num_features</c> differs from <c>in_features</c>.</exception>
    public static Linear FoldBnLinear(BatchNorm bn, Linear linear)
    {
        ArgumentNullException.ThrowIfNull(bn);
        ArgumentNullException.ThrowIfNull(linear);
        var (a, t) = Affine(bn, linear.TypeName, linear.Training, linear.InFeatures, "in_features");
        var (w, b) = Fold(linear.Weight, linear.Bias, linear.OutFeatures, linear.InFeatures, 1, _ => 0, a, t);
        return linear.WithParameters(w, b);
    }

    /// <summary>
    /// Folds <paramref name="bn"/> into the following (non-transposed) convolution: with weight <c>[out, in/groups, *kernel]</c>, entry
    /// <c>(o, j, ...)</c> reads input channel <c>i = (o / (out/groups)) · (in/groups) + j</c>; it is scaled by <c>a[i]</c> and the bias
    /// gains <c>Σ W[o, j, ...] · t[i]</c>.
    /// </summary>
    /// <remarks>
    /// Exact only when every value the kernel reads is a BatchNorm output. Zero padding breaks that: the padded zeros enter after the
    /// BatchNorm in the original but the folded bias assumes <c>t</c> there, so border outputs would differ. So the convolution must
    /// pad nothing (padding 0, <c>valid</c>, or <c>same</c> with a 1-wide kernel) — or pad by copying its input (<c>reflect</c>,
    /// <c>replicate</c>, <c>circular</c>), since copying commutes with the per-channel affine map.
    /// </remarks>
    /// <exception cref="InvalidOperationException">Either module is in training mode.</exception>
    /// <exception cref="ArgumentException">The convolution is transposed or zero-pads its input, the BatchNorm has no running
    /// statistics, or <c>num_features</c> differs from <c>in_channels</c>.</exception>
    public static Conv FoldBnConv(BatchNorm bn, Conv conv)
    {
        ArgumentNullException.ThrowIfNull(bn);
        ArgumentNullException.ThrowIfNull(conv);
        if (conv.Transposed)
            throw new ArgumentException($"{conv.TypeName}: folding a preceding BatchNorm is implemented for non-transposed convolutions only");
        if (ZeroPaddingProblem(conv) is { } problem) throw new ArgumentException(problem);
        var (a, t) = Affine(bn, conv.TypeName, conv.Training, conv.InChannels, "in_channels");
        var inPerGroup = conv.InChannels / conv.Groups;
        var outPerGroup = conv.OutChannels / conv.Groups;
        var kernel = conv.Weight.Count / (conv.OutChannels * inPerGroup);
        // A weight block (o, j) of `kernel` entries reads input channel (o / outPerGroup) · inPerGroup + j.
        var (w, b) = Fold(conv.Weight, conv.Bias, conv.OutChannels, inPerGroup, kernel, o => o / outPerGroup * inPerGroup, a, t);
        return conv.WithParameters(w, b);
    }

    /// <summary>
    /// Why folding a preceding BatchNorm into <paramref name="conv"/> would be wrong at the borders, or null when it is exact:
    /// the convolution zero-pads its input by a non-zero amount.
    /// </summary>
    public static string? ZeroPaddingProblem(Conv conv)
    {
        ArgumentNullException.ThrowIfNull(conv);
        if (conv.PaddingMode != PaddingMode.Zeros) return null;
        var (left, right) = conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan());
        if (left.All(x => x == 0) && right.All(x => x == 0)) return null;
        return $"{conv.TypeName} zero-pads its input (padding={conv.Padding}, padding_mode='zeros'): the padded zeros would enter after " +
               "the BatchNorm in the original but before its folded shift, so the outputs at the borders would differ";
    }

    /// <summary>The per-input-channel scale <c>a</c> and shift <c>t</c> of an eval BatchNorm, in float64.</summary>
    private static (double[] A, double[] T) Affine(BatchNorm bn, string layer, bool layerTraining, int inputs, string inputsName)
    {
        if (layerTraining || bn.Training)
            throw new InvalidOperationException(
                $"Fusion only for eval! {bn.TypeName} is in {Mode(bn.Training)} mode and {layer} in {Mode(layerTraining)} mode; " +
                "folding uses the running statistics, which only eval mode applies");
        if (bn.NumFeatures != inputs)
            throw new ArgumentException($"{bn.TypeName} has num_features={bn.NumFeatures} but the following {layer} has {inputsName}={inputs}");
        var mean = (bn.RunningMean ?? throw new ArgumentException(
            $"{bn.TypeName} has track_running_stats=False, so it has no running_mean/running_var to fold")).Float32;
        var scale = BatchNormFolding.Scale(bn);
        var beta = bn.Bias is { } bias ? bias.Float32 : [];
        var a = new double[inputs];
        var t = new double[inputs];
        for (var i = 0; i < inputs; i++)
        {
            a[i] = scale[i];
            // A non-affine BatchNorm has beta 0.
            t[i] = (beta.IsEmpty ? 0.0 : beta[i]) - mean[i] * scale[i];
        }
        return (a, t);
    }

    /// <summary>
    /// Scales weight blocks and accumulates the bias shift. The weight is <c>[rows, columns, block]</c> (Linear: block 1; conv:
    /// the kernel); row <c>o</c>, column <c>j</c> reads input <c>firstInput(o) + j</c>.
    /// </summary>
    private static (Tensor Weight, Tensor Bias) Fold(Tensor weight, Tensor? bias, int rows, int columns, int block,
        Func<int, int> firstInput, double[] a, double[] t)
    {
        var w = weight.RawFloat32;
        var c = bias?.RawFloat32;
        var scaled = new float[w.Length];
        var shifted = new float[rows];
        for (var o = 0; o < rows; o++)
        {
            var sum = c is null ? 0.0 : c[o];
            var first = firstInput(o);
            for (var j = 0; j < columns; j++)
            {
                var input = first + j;
                var start = (o * columns + j) * block;
                for (var k = start; k < start + block; k++)
                {
                    sum += w[k] * t[input];
                    scaled[k] = (float)(w[k] * a[input]);
                }
            }
            shifted[o] = (float)sum;
        }
        return (Tensor.Adopt(scaled, [.. weight.Shape]), Tensor.Adopt(shifted, [rows]));
    }

    private static string Mode(bool training) => training ? "training" : "eval";
}
