using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// The float32 arithmetic of PyTorch 1.13's Conv+BatchNorm and Linear+BatchNorm QAT modules
/// (<c>_ConvBnNd._forward_approximate</c> and <c>LinearBn1d.forward</c>, the same steps), of <c>fuse_conv_bn_weights</c>
/// and <c>fuse_linear_bn_weights</c> as <c>convert</c> calls them, and of a training-mode BatchNorm's running-statistics update
/// (ATen's <c>batch_norm_cpu_update_stats_template</c>), operation for operation: the Python scalar eps is added as
/// float32, sums are accumulated in float64 as ATen's CPU <c>acc_type</c> does. This project's own folding
/// (<c>Fuser.FuseModules</c>) rounds once in float64 instead, which is closer to the real numbers but not to PyTorch's bits.
/// </summary>
internal static class ConvBnMath
{
    /// <summary><c>bn.weight / sqrt(running_var + eps)</c>: the factor the QAT forward scales the weight by.</summary>
    public static float[] ScaleFactor(BatchNorm bn, Tensor runningVar)
    {
        var w = Affine(bn).Weight;
        var rv = runningVar.Float32;
        var sf = new float[rv.Length];
        for (int c = 0; c < sf.Length; c++) sf[c] = w[c] / MathF.Sqrt(rv[c] + (float)bn.Eps);
        return sf;
    }

    /// <summary>The weight with output channel <c>c</c> multiplied by <paramref name="perChannel"/>[c].</summary>
    public static Tensor ScaleOutputChannels(Tensor weight, ReadOnlySpan<float> perChannel)
    {
        var w = weight.Float32;
        var result = new float[w.Length];
        int inner = w.Length / perChannel.Length;
        for (int i = 0; i < w.Length; i++) result[i] = w[i] * perChannel[i / inner];
        return Tensor.FromFloat32(result, [.. weight.Dimensions]);
    }

    /// <summary>Where the BatchNorm's scale enters a folded bias: the two PyTorch functions multiply in different orders,
    /// which changes the float32 result.</summary>
    public enum FoldOrder
    {
        /// <summary><c>fuse_conv_bn_weights</c>: <c>(b - mean) * rsqrt(var + eps) * gamma + beta</c>.</summary>
        Conv,

        /// <summary><c>fuse_linear_bn_weights</c>: <c>(b - mean) * (gamma * rsqrt(var + eps)) + beta</c>.</summary>
        Linear,
    }

    /// <summary><c>fuse_conv_bn_weights</c> or <c>fuse_linear_bn_weights</c>: the layer's weight (output channels first)
    /// and bias with the BatchNorm (its running statistics <paramref name="stats"/>) folded in.</summary>
    public static (Tensor Weight, Tensor Bias) Fold(Tensor weight, Tensor? layerBias, BatchNorm bn, BatchNormStatistics stats, FoldOrder order)
    {
        var (bw, bb) = Affine(bn);
        var rm = stats.RunningMean.Float32;
        var rv = stats.RunningVar.Float32;
        int n = rm.Length;
        var b = layerBias is { } t ? t.Float32.ToArray() : new float[n];
        var factor = new float[n];
        var bias = new float[n];
        for (int c = 0; c < n; c++)
        {
            float rsqrt = 1f / MathF.Sqrt(rv[c] + (float)bn.Eps);
            factor[c] = bw[c] * rsqrt;
            bias[c] = order == FoldOrder.Conv ? (b[c] - rm[c]) * rsqrt * bw[c] + bb[c] : (b[c] - rm[c]) * factor[c] + bb[c];
        }
        return (ScaleOutputChannels(weight, factor), Tensor.FromFloat32(bias, n));
    }

    /// <summary>
    /// The running statistics after a training-mode BatchNorm saw <paramref name="input"/> ([N, C, ...]): per channel the
    /// mean (float64 sum, stored float32) and the sum of squared deviations from it (float32 terms, float64 sum); then
    /// <c>running = momentum * batch + (1 - momentum) * running</c> in float64 with the unbiased variance, the momentum
    /// being <c>1 / num_batches_tracked</c> when the BatchNorm has none (a cumulative average).
    /// </summary>
    public static BatchNormStatistics Update(BatchNorm bn, BatchNormStatistics stats, Tensor input)
    {
        var x = input.Float32;
        int channels = input.Size(1);
        int image = 1;
        for (int d = 2; d < input.Rank; d++) image *= input.Size(d);
        int batch = input.Size(0);
        long n = (long)batch * image;
        long tracked = stats.NumBatchesTracked + 1;
        double momentum = bn.Momentum ?? 1.0 / tracked;
        var rm = stats.RunningMean.Float32;
        var rv = stats.RunningVar.Float32;
        var mean = new float[channels];
        var variance = new float[channels];
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < image; i++) sum += x[(b * channels + c) * image + i];
            float m = (float)(sum / n);
            double varSum = 0;
            for (int b = 0; b < batch; b++)
                for (int i = 0; i < image; i++)
                {
                    float d = x[(b * channels + c) * image + i] - m;
                    varSum += d * d;
                }
            float unbiased = (float)varSum / (n - 1);
            mean[c] = (float)(momentum * m + (1 - momentum) * rm[c]);
            variance[c] = (float)(momentum * unbiased + (1 - momentum) * rv[c]);
        }
        return stats with { RunningMean = Tensor.FromFloat32(mean, channels), RunningVar = Tensor.FromFloat32(variance, channels), NumBatchesTracked = tracked };
    }

    private static (float[] Weight, float[] Bias) Affine(BatchNorm bn)
        => (bn.Weight?.Float32.ToArray() ?? Enumerable.Repeat(1f, bn.NumFeatures).ToArray(), bn.Bias?.Float32.ToArray() ?? new float[bn.NumFeatures]);
}
