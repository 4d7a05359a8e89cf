using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using MathNet.Numerics.LinearAlgebra;

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
        var (w, b) = Fold(ChannelAxis.Of(linear), bn, linear.TypeName, linear.Training, linear.Weight, linear.Bias, "in_features");
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
        var (w, b) = Fold(ChannelAxis.Of(conv), bn, conv.TypeName, conv.Training, conv.Weight, conv.Bias, "in_channels");
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

    /// <summary>
    /// The fold itself: with the BatchNorm as the per-input-channel map <c>x ↦ a·x + t</c> (<c>a</c> its scale,
    /// <c>t = beta - running_mean · a</c>), the weight becomes <c>W·diag(a)</c> and the bias <c>c + W·t</c>, both in float64
    /// (MathNet for the vectors and the product) and rounded once.
    /// </summary>
    private static (Tensor Weight, Tensor Bias) Fold(ChannelAxis axis, BatchNorm bn, string layer, bool layerTraining, Tensor weight,
        Tensor? bias, string inputsName)
    {
        EvalOnly.Require(layer, layerTraining, bn, bnFirst: true);
        if (bn.NumFeatures != axis.InChannels)
            throw new ArgumentException($"{bn.TypeName} has num_features={bn.NumFeatures} but the following {layer} has {inputsName}={axis.InChannels}");
        // The BatchNorm's own map with no bias before it: t = (0 - running_mean)·a + beta.
        var (a, t) = BatchNormFolding.Affine(bn, default, bn.NumFeatures);
        var w = weight.RawFloat32;
        var c = bias is null ? Vector<double>.Build.Dense(axis.OutChannels) : BatchNormFolding.ToVector(bias);
        var scaled = axis.ScaleInputs(w, a);
        return (Tensor.Adopt(scaled, [.. weight.Shape]), BatchNormFolding.ToTensor(c + axis.ApplyToInputs(w, Vector<double>.Build.Dense(t))));
    }
}
