using System.Runtime.CompilerServices;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// BatchNorm as a per-channel affine map <c>y = x·scale[c] + shift[c]</c> (then an optional activation).
/// With running statistics (eval mode, tracked) the map comes from them and can be folded into a preceding conv or
/// linear epilogue; otherwise it comes from the batch (biased variance, as PyTorch normalises in training).
/// Running statistics are never updated: modules are immutable values.
/// </summary>
internal static unsafe class NormKernels
{
    /// <summary>Whether PyTorch would normalise with the batch's statistics: training mode, or no running statistics.</summary>
    public static bool UsesBatchStatistics(BatchNorm bn) => bn.Training || bn.RunningMean is null || bn.RunningVar is null;

    /// <summary>
    /// The eval-mode map composed after a preceding bias, <c>BN(x + bias) = x·scale + shift</c>: the core's
    /// <see cref="BatchNormFolding.Affine"/> (the map folding writes into a layer), each value rounded once to float32.
    /// </summary>
    public static (float[] Scale, float[] Shift) RunningAffine(BatchNorm bn, ReadOnlySpan<float> precedingBias)
    {
        var (scale, shift) = BatchNormFolding.Affine(bn, precedingBias, bn.NumFeatures);
        return (Array.ConvertAll(scale, v => (float)v), Array.ConvertAll(shift, v => (float)v));
    }

    /// <summary>The batch-statistics map of an input <c>[N, C, *]</c>: mean and biased variance over every axis but C.</summary>
    public static (float[] Scale, float[] Shift) BatchAffine(BatchNorm bn, Tensor x, int threads)
    {
        var n = x.Size(0);
        var c = x.Size(1);
        var inner = x.Count / Math.Max(1, n * c);
        var count = (long)n * inner;
        if (count <= 1)
            throw new EngineInputException($"expected more than 1 value per channel when using batch statistics, got input size {Tensor.ShapeString(x.Shape)}");
        var scale = new float[c];
        var shift = new float[c];
        var data = x.RawFloat32;
        Par.For(c, threads, 2 * count, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int ch) =>
        {
            double sum = 0;
            for (var i = 0; i < n; i++)
            {
                var off = ((long)i * c + ch) * inner;
                for (var j = 0; j < inner; j++) sum += data[off + j];
            }
            var mean = sum / count;
            double sq = 0;
            for (var i = 0; i < n; i++)
            {
                var off = ((long)i * c + ch) * inner;
                for (var j = 0; j < inner; j++) { var d = data[off + j] - mean; sq += d * d; }
            }
            var invStd = 1.0 / Math.Sqrt(sq / count + bn.Eps);
            var alpha = (bn.Weight is null ? 1.0 : bn.Weight.Float32[ch]) * invStd;
            scale[ch] = (float)alpha;
            shift[ch] = (float)((bn.Bias is null ? 0.0 : bn.Bias.Float32[ch]) - mean * alpha);
        });
        return (scale, shift);
    }

    /// <summary>BatchNorm of an input <c>[N, C, *]</c> (checked by the caller), then <paramref name="act"/>.</summary>
    public static Tensor BatchNorm(BatchNorm bn, Tensor x, Act act, Pass pass)
    {
        var (scale, shift) = UsesBatchStatistics(bn) ? BatchAffine(bn, x, pass.Threads) : RunningAffine(bn, default);
        return ChannelAffine(x, new Epilogue(scale, shift, act), pass);
    }

    /// <summary>Applies a per-channel epilogue to an input <c>[N, C, *]</c> (channels on axis 1).</summary>
    public static Tensor ChannelAffine(Tensor x, Epilogue ep, Pass pass)
    {
        var n = x.Rank == 0 ? 1 : x.Size(0);
        var c = x.Rank < 2 ? 1 : x.Size(1);
        var inner = x.Count / Math.Max(1, n * c);
        var output = pass.Output(x.Count);
        var src = x.RawFloat32;
        Par.For(n * c, pass.Threads, inner, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            var (scale, shift) = ep.At(plane % c);
            fixed (float* s = src, d = output)
                Epilogue.ApplyRun(s + (long)plane * inner, d + (long)plane * inner, inner, scale, shift, ep.Scale is not null, ep.Activation);
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary>
    /// <c>layer_norm(x, normalized_shape, weight, bias, eps)</c>: each row of the trailing dimensions
    /// <paramref name="normalizedShape"/> normalised by its own mean and biased variance (computed in double), then
    /// scaled and shifted element by element. The sizes are checked before anything is read.
    /// </summary>
    public static Tensor LayerNorm(Tensor x, int[] normalizedShape, Tensor? weight, Tensor? bias, double eps, Pass pass)
    {
        var k = normalizedShape.Length;
        if (k == 0 || k > x.Rank || !x.Shape[^k..].SequenceEqual(normalizedShape))
            throw new EngineInputException($"layer_norm: normalized_shape {Tensor.ShapeString(normalizedShape)} must be the input's trailing dimensions, got an input {Tensor.ShapeString(x.Shape)}");
        var row = Tensor.Product(normalizedShape);
        foreach (var (t, name) in new[] { (weight, "weight"), (bias, "bias") })
            if (t is not null && (t.DType != DType.Float32 || t.Count != row))
                throw new EngineInputException($"layer_norm: {name} must be a float32 tensor of {row} elements (normalized_shape {Tensor.ShapeString(normalizedShape)}), got {t.DType} {Tensor.ShapeString(t.Shape)}");
        if (!(eps >= 0)) throw new EngineInputException($"layer_norm: eps must be a non-negative number, got {eps}");
        return NormaliseRows(x, row, weight, bias, eps, pass, (_, i) => i);
    }

    /// <summary>Every row of <paramref name="row"/> consecutive elements normalised by its own moments, then scaled and
    /// shifted by the weight and bias element <paramref name="affine"/> gives for (row, position).</summary>
    private static Tensor NormaliseRows(Tensor x, int row, Tensor? weight, Tensor? bias, double eps, Pass pass, Func<int, int, int> affine)
    {
        var src = x.RawFloat32;
        var rows = row == 0 ? 0 : src.Length / row;
        var output = pass.Output(src.Length);
        float[]? w = weight?.RawFloat32, b = bias?.RawFloat32;
        Par.For(rows, pass.Threads, 3L * row, r =>
        {
            var s = src.AsSpan(r * row, row);
            var d = output.AsSpan(r * row, row);
            var (mean, inv) = Moments(s, eps);
            for (var i = 0; i < row; i++)
            {
                var c = affine(r, i);
                d[i] = (float)((s[i] - mean) * inv * (w is null ? 1.0 : w[c]) + (b is null ? 0.0 : b[c]));
            }
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary>The mean of <paramref name="s"/> and 1 / sqrt(biased variance + eps), in float64 (two passes, so that
    /// the variance does not cancel).</summary>
    private static (double Mean, double Inverse) Moments(ReadOnlySpan<float> s, double eps)
    {
        double sum = 0;
        foreach (var v in s) sum += v;
        var mean = sum / s.Length;
        double sq = 0;
        foreach (var v in s) sq += (v - mean) * (v - mean);
        return (mean, 1 / Math.Sqrt(sq / s.Length + eps));
    }

    /// <summary><c>group_norm</c> over an input [N, C, *] (and <c>instance_norm</c> with instance statistics, which is
    /// one group per channel): each of the <paramref name="groups"/> groups of C / groups channels is normalised by its
    /// own mean and biased variance (in float64), then scaled by the per-channel weight and shifted by the bias.</summary>
    /// <exception cref="EngineInputException">Groups that do not divide the channels, parameters of another length, a negative eps.</exception>
    public static Tensor GroupNorm(Tensor x, int groups, Tensor? weight, Tensor? bias, double eps, Pass pass)
    {
        if (x.Rank < 2) throw new EngineInputException($"group_norm: the input must be [N, C, *], got {Tensor.ShapeString(x.Shape)}");
        var channels = x.Shape[1];
        if (groups < 1 || channels % groups != 0)
            throw new EngineInputException($"group_norm: num_groups ({groups}) must divide the {channels} channels");
        foreach (var (t, name) in new[] { (weight, "weight"), (bias, "bias") })
            if (t is not null && (t.DType != DType.Float32 || t.Count != channels))
                throw new EngineInputException($"group_norm: {name} must be a float32 tensor of {channels} elements, got {t.DType} {Tensor.ShapeString(t.Shape)}");
        if (!(eps >= 0)) throw new EngineInputException($"group_norm: eps must be a non-negative number, got {eps}");
        var plane = channels == 0 || x.Shape[0] == 0 ? 0 : x.Count / (x.Shape[0] * channels);
        var perGroup = channels / groups;
        // Row r is group r % groups of its image; element i of it lies in the group's channel i / plane.
        return NormaliseRows(x, perGroup * plane, weight, bias, eps, pass, (r, i) => r % groups * perGroup + i / plane);
    }
}
