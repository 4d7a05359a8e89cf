using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace Fusion.Dsl.Folding;

/// <summary>
/// Folds an eval-mode BatchNorm into the layer before it, as PyTorch's <c>torch.nn.utils.fusion</c> does:
/// per output channel <c>c</c>, with <c>s[c] = gamma[c] / sqrt(running_var[c] + eps)</c>,
/// <c>W'[c] = W[c] · s[c]</c> and <c>b'[c] = (b[c] - running_mean[c]) · s[c] + beta[c]</c>.
/// A layer without bias is treated as bias 0 and gains one; a non-affine BatchNorm acts as gamma 1, beta 0.
/// The per-channel vectors are computed in float64 with MathNet and the results are rounded to float32 once. A fold
/// computes the per-channel vectors (scale, bias) at once; the folded weight is a <see cref="Tensor"/> whose elements are
/// computed on first read (<see cref="ChannelAxis.ScaleOutputs"/>), or never, when the engine packs the weight straight
/// from the original and the scale. Fusing a network therefore costs no pass over its weights and writes no copy of
/// them. The inputs are never changed; hyperparameters, training flag and hooks of the layer are kept.
/// </summary>
public static class BatchNormFolding
{
    /// <summary>
    /// Folds <paramref name="bn"/> into a (non-transposed) convolution: the output channel is weight dimension 0.
    /// </summary>
    /// <exception cref="InvalidOperationException">Either module is in training mode (PyTorch: "Fusion only for eval!").</exception>
    /// <exception cref="ArgumentException">The convolution is transposed, the BatchNorm has no running statistics,
    /// or its <c>num_features</c> differs from <c>out_channels</c>.</exception>
    public static Conv FoldConvBn(Conv conv, BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(conv);
        ArgumentNullException.ThrowIfNull(bn);
        if (conv.Transposed)
            throw new ArgumentException($"{conv.TypeName} is transposed: its output channel is weight dimension 1; use {nameof(FoldConvTransposeBn)}");
        return FoldConv(conv, bn);
    }

    /// <summary>
    /// Folds <paramref name="bn"/> into a transposed convolution. Its weight is <c>[in, out/groups, *kernel]</c>: the
    /// output channel of entry <c>(i, j, ...)</c> is <c>(i / (in/groups)) · (out/groups) + j</c>, i.e. dimension 1 taken
    /// per group (see <see cref="ChannelAxis"/>). (PyTorch 1.13 scales dimension 1 by all <c>out</c> channels and fails
    /// for <c>groups &gt; 1</c>.)
    /// </summary>
    /// <exception cref="InvalidOperationException">Either module is in training mode.</exception>
    /// <exception cref="ArgumentException">The convolution is not transposed, the BatchNorm has no running statistics,
    /// or its <c>num_features</c> differs from <c>out_channels</c>.</exception>
    public static Conv FoldConvTransposeBn(Conv convTranspose, BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(convTranspose);
        ArgumentNullException.ThrowIfNull(bn);
        if (!convTranspose.Transposed)
            throw new ArgumentException($"{convTranspose.TypeName} is not transposed: its output channel is weight dimension 0; use {nameof(FoldConvBn)}");
        return FoldConv(convTranspose, bn);
    }

    /// <summary>
    /// Folds <paramref name="bn"/> (a BatchNorm1d after the layer) into a Linear layer: the output feature is weight
    /// dimension 0. As in PyTorch, a BatchNorm with a single feature broadcasts over every output feature
    /// (it normalises inputs shaped <c>[N, 1, out]</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">Either module is in training mode.</exception>
    /// <exception cref="ArgumentException">The BatchNorm has no running statistics, or <c>num_features</c> is
    /// neither <c>out_features</c> nor 1.</exception>
    public static Linear FoldLinearBn(Linear linear, BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(linear);
        ArgumentNullException.ThrowIfNull(bn);
        var (weight, bias) = Fold(ChannelAxis.Of(linear), linear.TypeName, linear.Training, linear.Weight, linear.Bias, bn, allowSingleFeature: true);
        return linear.WithParameters(weight, bias);
    }

    /// <summary>
    /// The per-channel scale <c>gamma / sqrt(running_var + eps)</c> of an eval-mode BatchNorm, in float64
    /// (gamma is 1 when the BatchNorm is not affine).
    /// </summary>
    /// <exception cref="ArgumentException">The BatchNorm does not track running statistics.</exception>
    public static Vector<double> Scale(BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(bn);
        return Scale(bn, bn.Weight is null ? null : Vector<double>.Build.Dense(bn.NumFeatures));
    }

    /// <summary>
    /// An eval-mode BatchNorm after a layer whose bias is <paramref name="precedingBias"/> (empty: none) as one affine map
    /// per channel, <c>BN(x + b) = x·scale + shift</c>, with <c>scale = gamma / sqrt(running_var + eps)</c> (see
    /// <see cref="Scale(BatchNorm)"/>) and <c>shift = (b - running_mean)·scale + beta</c>, in float64. The one statement of
    /// that map: folding rounds it into the layer's weight and bias, and the engine rounds it once to float32 when it runs a
    /// BatchNorm (alone or in a fused group's epilogue).
    /// </summary>
    /// <param name="bn">The BatchNorm; its running statistics are used whatever its training flag (the caller decides).</param>
    /// <param name="precedingBias">The bias of the layer before, one entry per channel, or empty for none (0).</param>
    /// <param name="channels">The channels of the map: <c>num_features</c>, or any number for a one-feature BatchNorm, which
    /// broadcasts over them (as PyTorch's <c>fuse_linear_bn_eval</c> allows).</param>
    /// <exception cref="ArgumentException">The BatchNorm does not track running statistics, <paramref name="channels"/> is
    /// neither <c>num_features</c> nor broadcast from one feature, or the bias has another length.</exception>
    /// <returns>The scale and the shift, <paramref name="channels"/> entries each, new arrays the caller owns.</returns>
    public static (double[] Scale, double[] Shift) Affine(BatchNorm bn, ReadOnlySpan<float> precedingBias, int channels)
    {
        ArgumentNullException.ThrowIfNull(bn);
        var shift = Vector<double>.Build.Dense(channels);
        var scale = Affine(bn, precedingBias, channels, shift);
        return (scale.AsArray(), shift.AsArray());
    }

    /// <summary><see cref="Affine(BatchNorm, ReadOnlySpan{float}, int)"/> writing the shift into <paramref name="shift"/>
    /// (<paramref name="channels"/> entries, all overwritten); returns the scale, a new vector.</summary>
    private static Vector<double> Affine(BatchNorm bn, ReadOnlySpan<float> precedingBias, int channels, Vector<double> shift)
    {
        var broadcast = bn.NumFeatures == 1 && channels != 1;
        if (channels != bn.NumFeatures && !broadcast)
            throw new ArgumentException($"{bn.TypeName} has num_features={bn.NumFeatures}, which cannot map {channels} channels");
        if (!precedingBias.IsEmpty && precedingBias.Length != channels)
            throw new ArgumentException($"the preceding bias has {precedingBias.Length} entries for {channels} channels");
        var mean = bn.RunningMean ?? throw NoStats(bn);
        // One scratch vector holds gamma, then the running mean, then beta.
        var scratch = Scratch(channels, 0);
        var scale = Scale(bn, broadcast ? null : scratch);
        if (broadcast) scale = Vector<double>.Build.Dense(channels, scale[0]);
        if (precedingBias.IsEmpty) shift.Clear();
        else Widen(precedingBias, shift);
        Widen(mean.Float32, scratch);
        shift.Subtract(scratch, shift);
        shift.PointwiseMultiply(scale, shift);
        if (bn.Bias is { } beta)
        {
            Widen(beta.Float32, scratch);
            shift.Add(scratch, shift);
        }
        return scale;
    }

    /// <summary>
    /// Temporary vector <paramref name="slot"/> (0 or 1) of <paramref name="length"/> entries, this thread's to overwrite until
    /// its next fold. A fusion folds dozens of BatchNorms of a few widths: fresh temporaries per fold were a fifth of all
    /// that fusing mobilenet_v2 allocated, and a process that fuses once pays for every allocated byte again when it first
    /// touches the memory. Bounded: only widths up to <see cref="MaxScratchLength"/>, at most <see cref="MaxScratchWidths"/>
    /// of them at a time.
    /// </summary>
    private static Vector<double> Scratch(int length, int slot)
    {
        if (length > MaxScratchLength) return Vector<double>.Build.Dense(length);
        var cache = t_scratch ??= [];
        if (!cache.TryGetValue(length, out var vectors))
        {
            if (cache.Count == MaxScratchWidths) cache.Clear();
            cache[length] = vectors = new Vector<double>?[2];
        }
        return vectors[slot] ??= Vector<double>.Build.Dense(length);
    }

    [ThreadStatic] private static Dictionary<int, Vector<double>?[]>? t_scratch;
    private const int MaxScratchLength = 4096;
    private const int MaxScratchWidths = 32;

    /// <summary><see cref="Scale(BatchNorm)"/>, reading gamma into <paramref name="gammaScratch"/> (of <c>num_features</c>
    /// entries; null when there is no gamma or the caller has no scratch to lend).</summary>
    private static Vector<double> Scale(BatchNorm bn, Vector<double>? gammaScratch)
    {
        var variance = bn.RunningVar ?? throw NoStats(bn);
        // In place on one vector (plus gamma's): a fold should allocate little beyond the folded tensors.
        var scale = Vector<double>.Build.Dense(bn.NumFeatures);
        Widen(variance.Float32, scale);
        scale.Add(bn.Eps, scale);
        scale.PointwiseSqrt(scale);
        if (bn.Weight is { } g)
        {
            var gamma = gammaScratch ?? Vector<double>.Build.Dense(bn.NumFeatures);
            Widen(g.Float32, gamma);
            gamma.PointwiseDivide(scale, scale);
        }
        else scale.DivideByThis(1.0, scale);
        return scale;
    }

    /// <summary>A float32 tensor's elements as a float64 vector.</summary>
    internal static Vector<double> ToVector(Tensor t)
    {
        var v = Vector<double>.Build.Dense(t.Count);
        Widen(t.Float32, v);
        return v;
    }

    /// <summary>Writes float32 elements into a dense float64 vector of the same length (or one element into every entry),
    /// exactly: the fold's vectors start from the stored float32 values.</summary>
    private static void Widen(ReadOnlySpan<float> source, Vector<double> target)
    {
        var t = target.AsArray();
        if (source.Length == 1) Array.Fill(t, source[0]);
        else for (var i = 0; i < t.Length; i++) t[i] = source[i];
    }

    private static Conv FoldConv(Conv conv, BatchNorm bn)
    {
        var (weight, bias) = Fold(ChannelAxis.Of(conv), conv.TypeName, conv.Training, conv.Weight, conv.Bias, bn, allowSingleFeature: false);
        return conv.WithParameters(weight, bias);
    }

    /// <summary>The folded weight (lazy) and bias of a layer whose output channels <paramref name="axis"/> locates.</summary>
    private static (Tensor Weight, Tensor Bias) Fold(ChannelAxis axis, string layer, bool layerTraining, Tensor weight, Tensor? bias,
        BatchNorm bn, bool allowSingleFeature)
    {
        EvalOnly.Require(layer, layerTraining, bn);
        var outChannels = axis.OutChannels;
        var broadcast = allowSingleFeature && bn.NumFeatures == 1 && outChannels != 1;
        if (bn.NumFeatures != outChannels && !broadcast)
            throw new ArgumentException(
                $"{bn.TypeName} has num_features={bn.NumFeatures} but {layer} produces {outChannels} output channels" +
                (allowSingleFeature ? " (only equal counts or a single feature fold)" : ""));
        // W' = W · s and b' = (b - mean) · s + beta: the BatchNorm's map after the layer's bias, each rounded once. The
        // unrounded shift is needed only until it is rounded, so it lives in a scratch vector.
        var folded = Scratch(outChannels, 1);
        var s = Affine(bn, bias is null ? default : bias.Float32, outChannels, folded).AsArray();
        // The closure holds the storage, not the source tensor (see PendingFold.Create).
        var w = weight.RawFloat32;
        return (PendingFold.Create(weight, s, () => axis.ScaleOutputs(w, s)), ToTensor(folded));
    }

    /// <summary>A float64 vector rounded to a float32 tensor, once per element.</summary>
    internal static Tensor ToTensor(Vector<double> v) => ToTensor(v.AsArray() ?? v.ToArray());

    /// <summary>float64 values rounded to a float32 tensor, once per element.</summary>
    internal static Tensor ToTensor(double[] v)
    {
        var result = new float[v.Length];
        for (var i = 0; i < result.Length; i++) result[i] = (float)v[i];
        return Tensor.Adopt(result, [result.Length]);
    }

    internal static ArgumentException NoStats(BatchNorm bn)
        => new($"{bn.TypeName} has track_running_stats=False, so it has no running_mean/running_var to fold");
}
