using System.Runtime.CompilerServices;
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
    /// The eval-mode map composed after a preceding bias: <c>BN(x + bias) = x·scale + shift</c>.
    /// Computed in double and rounded once.
    /// </summary>
    public static (float[] Scale, float[] Shift) RunningAffine(BatchNorm bn, ReadOnlySpan<float> precedingBias)
    {
        var c = bn.NumFeatures;
        var mean = bn.RunningMean!.Float32;
        var variance = bn.RunningVar!.Float32;
        var scale = new float[c];
        var shift = new float[c];
        for (var i = 0; i < c; i++)
        {
            var invStd = 1.0 / Math.Sqrt(variance[i] + bn.Eps);
            var alpha = (bn.Weight is null ? 1.0 : bn.Weight.Float32[i]) * invStd;
            var beta = (bn.Bias is null ? 0.0 : bn.Bias.Float32[i]) - mean[i] * alpha;
            scale[i] = (float)alpha;
            shift[i] = (float)((precedingBias.IsEmpty ? 0.0 : precedingBias[i]) * alpha + beta);
        }
        return (scale, shift);
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
}
