using System.Runtime.CompilerServices;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace Fusion.Dsl.Folding;

/// <summary>
/// Folds an eval-mode BatchNorm into the layer before it, as PyTorch's <c>torch.nn.utils.fusion</c> does:
/// per output channel <c>c</c>, with <c>s[c] = gamma[c] / sqrt(running_var[c] + eps)</c>,
/// <c>W'[c] = W[c] · s[c]</c> and <c>b'[c] = (b[c] - running_mean[c]) · s[c] + beta[c]</c>.
/// A layer without bias is treated as bias 0 and gains one; a non-affine BatchNorm acts as gamma 1, beta 0.
/// The per-channel scale is computed in float64 and the results are rounded to float32 once. A fold computes the
/// per-channel vectors (scale, bias) at once; the folded weight is a <see cref="Tensor"/> whose elements are computed
/// on first read, or never, when the engine packs the weight straight from the original and the scale (see
/// <see cref="Tensor"/>). Fusing a network therefore costs no pass over its weights and writes no copy of them. The inputs
/// are never changed; hyperparameters, training flag and hooks of the layer are kept.
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
        var f = Factors(conv.TypeName, conv.Training, conv.OutChannels, bn, allowSingleFeature: false);
        // Weight [out, in/groups, *kernel]: each output channel owns one contiguous block.
        return conv.WithParameters(ScaledRows(conv.Weight, f.Scale.AsArray() ?? f.Scale.ToArray()), FoldBias(conv.Bias, f, conv.OutChannels));
    }

    /// <summary>
    /// Folds <paramref name="bn"/> into a transposed convolution. Its weight is <c>[in, out/groups, *kernel]</c>: the
    /// output channel of entry <c>(i, j, ...)</c> is <c>(i / (in/groups)) · (out/groups) + j</c>, i.e. dimension 1 taken
    /// per group. (PyTorch 1.13 scales dimension 1 by all <c>out</c> channels and fails for <c>groups &gt; 1</c>.)
    /// </summary>
    /// <exception cref="InvalidOperationException">Either module is in training mode.</exception>
    /// <exception cref="ArgumentException">The convolution is not transposed, the BatchNorm has no running statistics,
    /// or its <c>num_features</c> differs from <c>out_channels</c>.</exception>
    public static Conv FoldConvTransposeBn(Conv convTranspose, BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(convTranspose);
        ArgumentNullException.ThrowIfNull(bn);
        var conv = convTranspose;
        if (!conv.Transposed)
            throw new ArgumentException($"{conv.TypeName} is not transposed: its output channel is weight dimension 0; use {nameof(FoldConvBn)}");
        var f = Factors(conv.TypeName, conv.Training, conv.OutChannels, bn, allowSingleFeature: false);
        var source = conv.Weight;
        var outPerGroup = conv.OutChannels / conv.Groups;
        var inPerGroup = conv.InChannels / conv.Groups;
        var inChannels = conv.InChannels;
        var scale = f.Scale.AsArray() ?? f.Scale.ToArray();
        // The closure holds the storage, not the source tensor (see Tensor.Folded).
        var w = source.RawFloat32;
        var weight = Tensor.Folded(source, scale, () =>
        {
            var scaled = GC.AllocateUninitializedArray<float>(w.Length);
            var kernel = w.Length / (inChannels * outPerGroup);
            ForBlocks(inChannels, w.Length, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                for (var i = first; i < end; i++)
                {
                    var firstChannel = i / inPerGroup * outPerGroup;
                    for (var j = 0; j < outPerGroup; j++)
                        ScaleBlock(w, scaled, (i * outPerGroup + j) * kernel, kernel, scale[firstChannel + j]);
                }
            });
            return scaled;
        });
        return conv.WithParameters(weight, FoldBias(conv.Bias, f, conv.OutChannels));
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
        var f = Factors(linear.TypeName, linear.Training, linear.OutFeatures, bn, allowSingleFeature: true);
        var outF = linear.OutFeatures;
        var bnScale = f.Scale.AsArray() ?? f.Scale.ToArray();
        // One factor per output feature, a single BatchNorm feature broadcast to all of them. Weight [out, in]: each
        // output feature owns one row.
        var scale = bn.NumFeatures == 1 && outF != 1 ? Enumerable.Repeat(bnScale[0], outF).ToArray() : bnScale;
        return linear.WithParameters(ScaledRows(linear.Weight, scale), FoldBias(linear.Bias, f, linear.OutFeatures));
    }

    /// <summary>
    /// The lazy fold of a weight whose dimension 0 is the output channel (a convolution's or a Linear's): the contiguous
    /// block of channel <c>c</c> scaled by <c>scale[c]</c>, computed on first read.
    /// </summary>
    private static Tensor ScaledRows(Tensor source, double[] scale)
    {
        // The closure holds the storage, not the source tensor (see Tensor.Folded).
        var w = source.RawFloat32;
        return Tensor.Folded(source, scale, () =>
        {
            // Every element is written below, so the array need not be zeroed first.
            var scaled = GC.AllocateUninitializedArray<float>(w.Length);
            var block = scale.Length == 0 ? 0 : w.Length / scale.Length;
            ForBlocks(scale.Length, w.Length, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
            {
                for (var c = first; c < end; c++) ScaleBlock(w, scaled, c * block, block, scale[c]);
            });
            return scaled;
        });
    }

    /// <summary>
    /// The per-channel scale <c>gamma / sqrt(running_var + eps)</c> of an eval-mode BatchNorm, in float64
    /// (gamma is 1 when the BatchNorm is not affine).
    /// </summary>
    /// <exception cref="ArgumentException">The BatchNorm does not track running statistics.</exception>
    public static Vector<double> Scale(BatchNorm bn)
    {
        ArgumentNullException.ThrowIfNull(bn);
        var n = bn.NumFeatures;
        var variance = bn.RunningVar ?? throw NoStats(bn);
        // In place on one vector (plus gamma's): a fold should allocate little beyond the folded tensors.
        var scale = ToVector(variance, n);
        scale.Add(bn.Eps, scale);
        scale.PointwiseSqrt(scale);
        if (bn.Weight is { } g) ToVector(g, n).PointwiseDivide(scale, scale);
        else scale.DivideByThis(1.0, scale);
        return scale;
    }

    /// <summary>The factors of one fold per BatchNorm channel: the float64 scale, and the running mean and beta as stored
    /// (beta null for a non-affine BatchNorm, meaning 0).</summary>
    private readonly record struct FoldFactors(Vector<double> Scale, float[] Mean, float[]? Beta);

    private static FoldFactors Factors(string layer, bool layerTraining, int outChannels, BatchNorm bn, bool allowSingleFeature)
    {
        if (layerTraining || bn.Training)
            throw new InvalidOperationException(
                $"Fusion only for eval! {layer} is in {Mode(layerTraining)} mode and {bn.TypeName} in {Mode(bn.Training)} mode; " +
                "folding uses the running statistics, which only eval mode applies");
        if (bn.NumFeatures != outChannels && !(allowSingleFeature && bn.NumFeatures == 1))
            throw new ArgumentException(
                $"{bn.TypeName} has num_features={bn.NumFeatures} but {layer} produces {outChannels} output channels" +
                (allowSingleFeature ? " (only equal counts or a single feature fold)" : ""));
        var mean = bn.RunningMean ?? throw NoStats(bn);
        return new FoldFactors(Scale(bn), mean.RawFloat32, bn.Bias?.RawFloat32);
    }

    private static string Mode(bool training) => training ? "training" : "eval";

    private static ArgumentException NoStats(BatchNorm bn)
        => new($"{bn.TypeName} has track_running_stats=False, so it has no running_mean/running_var to fold");

    private static Vector<double> ToVector(Tensor t, int n)
    {
        var data = t.Float32;
        var v = new double[n];
        for (var i = 0; i < n; i++) v[i] = data[i];
        return Vector<double>.Build.Dense(v);
    }

    /// <summary>target[k] = <see cref="PendingFold.Element"/>(source[k], scale) over one block, vectorised: widening to
    /// double, multiplying and narrowing rounds exactly as the scalar cast does, so the result is bit-identical to it.</summary>
    // Fully optimised from the first call: tier-0 code for the vector loop is several times slower, and a fusion
    // runs each fold only once, so tiered compilation never gets to promote it.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleBlock(float[] source, float[] target, int start, int length, double scale)
    {
        var src = source.AsSpan(start, length);
        var dst = target.AsSpan(start, length);
        var k = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated && length >= System.Numerics.Vector<float>.Count)
        {
            var s = new System.Numerics.Vector<double>(scale);
            var n = System.Numerics.Vector<float>.Count;
            for (; k <= length - n; k += n)
            {
                System.Numerics.Vector.Widen(new System.Numerics.Vector<float>(src[k..]), out var lo, out var hi);
                System.Numerics.Vector.Narrow(lo * s, hi * s).CopyTo(dst[k..]);
            }
        }
        for (; k < length; k++) dst[k] = PendingFold.Element(src[k], scale);
    }

    /// <summary>
    /// Runs <paramref name="scaleBlocks"/> over blocks 0..count-1, split into one contiguous range per core when the weight
    /// is large enough for the split to pay (folding resnet50 touches 94 MB). Ranges, not one delegate call per channel:
    /// the loop over channels then runs as fully optimised code from the first fusion.
    /// </summary>
    private static void ForBlocks(int count, long elements, Action<int, int> scaleBlocks)
    {
        var parts = elements < ParallelThreshold || count < 2 ? 1 : Math.Min(count, Environment.ProcessorCount);
        if (parts == 1)
        {
            scaleBlocks(0, count);
            return;
        }
        Parallel.For(0, parts, p => scaleBlocks((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts)));
    }

    private const long ParallelThreshold = 1 << 18;

    /// <summary><c>b' = (b - mean) · s + beta</c> per output channel; a missing bias is 0, a single BN feature broadcasts.</summary>
    private static Tensor FoldBias(Tensor? bias, FoldFactors f, int outChannels)
    {
        var b = bias?.RawFloat32;
        var result = new float[outChannels];
        var broadcast = f.Scale.Count == 1 && outChannels != 1;
        for (var c = 0; c < outChannels; c++)
        {
            var k = broadcast ? 0 : c;
            var bc = b is null ? 0.0 : b[c];
            var beta = f.Beta is null ? 0.0 : f.Beta[k];
            result[c] = (float)((bc - f.Mean[k]) * f.Scale[k] + beta);
        }
        return Tensor.Adopt(result, [outChannels]);
    }
}
