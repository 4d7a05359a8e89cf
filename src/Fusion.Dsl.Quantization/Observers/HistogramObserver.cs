using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>HistogramObserver</c> (1.13): a running histogram of the batches over [min, max]; a wider batch
/// re-bins the old histogram onto the combined range by upsampling it and integrating it down;
/// <see cref="CalculateQParams"/> searches the histogram for the min/max that minimise the L2 quantization error
/// (<c>_non_linear_param_search</c>) and derives the parameters from those as <see cref="MinMaxObserver"/> does.
/// Reproduced with PyTorch's own roundings, including its <c>torch.histc(x, min=int(min), max=int(max))</c>: the new
/// batch is binned between its range's ends truncated to integers, and elements outside those are not counted.
/// Per-tensor schemes only; unlike <see cref="MinMaxObserver"/>, symmetric quint8 with reduce_range is allowed.
/// </summary>
public sealed class HistogramObserver : Observer
{
    private const string Name = nameof(HistogramObserver);

    /// <summary>PyTorch's default number of bins.</summary>
    public const int DefaultBins = 2048;

    /// <summary>PyTorch's default upsample rate.</summary>
    public const int DefaultUpsampleRate = 128;

    private readonly float[] _histogram;

    /// <summary>An observer that has seen nothing.</summary>
    /// <param name="settings">Dtype, per-tensor scheme, reduce_range and range.</param>
    /// <param name="bins">Bins of the histogram.</param>
    /// <param name="upsampleRate">Factor by which the old histogram is upsampled when the range grows.</param>
    /// <exception cref="ArgumentException">A per-channel scheme, or bins or upsample rate below 1.</exception>
    public HistogramObserver(QuantizationSettings settings, int bins = DefaultBins, int upsampleRate = DefaultUpsampleRate)
        : this(settings, bins, upsampleRate, float.PositiveInfinity, float.NegativeInfinity, new float[Math.Max(bins, 0)])
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Require(Name, perChannel: false, refuseSymmetricReducedQUInt8: false);
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), bins, $"{Name} needs at least one bin");
        if (upsampleRate < 1) throw new ArgumentOutOfRangeException(nameof(upsampleRate), upsampleRate, $"{Name}'s upsample rate must be at least 1");
    }

    private HistogramObserver(QuantizationSettings settings, int bins, int upsampleRate, float minVal, float maxVal, float[] histogram)
    {
        Settings = settings;
        Bins = bins;
        UpsampleRate = upsampleRate;
        MinVal = minVal;
        MaxVal = maxVal;
        _histogram = histogram;
    }

    /// <summary>The observer's options.</summary>
    public QuantizationSettings Settings { get; }

    /// <summary>Bins of the histogram.</summary>
    public int Bins { get; }

    /// <summary>Factor by which the old histogram is upsampled when the range grows.</summary>
    public int UpsampleRate { get; }

    /// <summary>The lower end of the histogram's range (+inf before the first batch).</summary>
    public float MinVal { get; }

    /// <summary>The upper end of the histogram's range (-inf before the first batch).</summary>
    public float MaxVal { get; }

    /// <summary>The histogram: float32 weights per bin (fractional once an old histogram was re-binned).</summary>
    public ImmutableArray<float> Histogram => ImmutableArray.Create(_histogram);

    /// <summary>Bins of the quantized type the search assumes (2^8 for both 8-bit dtypes).</summary>
    private const int DstBins = 256;

    /// <inheritdoc/>
    public override HistogramObserver Observe(Tensor batch)
    {
        var x = Batch.Elements(batch, Name);
        bool uninitialized = MinVal == float.PositiveInfinity && MaxVal == float.NegativeInfinity;
        if (uninitialized || MinVal == MaxVal)
        {
            var (min, max) = Batch.AMinMax(x);
            return new HistogramObserver(Settings, Bins, UpsampleRate, min, max, TorchKernels.Histc(x, Bins, Math.Truncate(min), Math.Truncate(max)));
        }
        var (newMin, newMax) = Batch.AMinMax(x);
        float combinedMin = MathF.Min(newMin, MinVal);
        float combinedMax = MathF.Max(newMax, MaxVal);
        // _adjust_min_max: a common grid of width (max - min) / (bins * upsample_rate); only the max is relaxed.
        float histBinWidth = (MaxVal - MinVal) / (float)(Bins * UpsampleRate);
        float binsWidth = (float)Bins * histBinWidth;
        int downsampleRate = (int)MathF.Ceiling((combinedMax - combinedMin) / binsWidth);
        float e = (float)downsampleRate * binsWidth - (combinedMax - combinedMin);
        combinedMax += e;
        int startIdx = (int)MathF.Round((MinVal - combinedMin) / histBinWidth, MidpointRounding.ToEven);
        var combined = TorchKernels.Histc(x, Bins, Math.Truncate(combinedMin), Math.Truncate(combinedMax));
        if (combinedMin == MinVal && combinedMax == MaxVal)
        {
            for (int i = 0; i < Bins; i++) combined[i] += _histogram[i];
        }
        else
        {
            CombineHistograms(combined, downsampleRate, startIdx);
        }
        return new HistogramObserver(Settings, Bins, UpsampleRate, combinedMin, combinedMax, combined);
    }

    /// <summary>
    /// <c>_combine_histograms</c>: the old histogram repeated <see cref="UpsampleRate"/> times per bin, placed at
    /// <paramref name="startIdx"/> on a grid of bins * downsample_rate cells, integrated in float64 and sampled every
    /// downsample_rate cells; the differences (the previous sample narrowed to float32, as PyTorch's float32 buffer
    /// holds it) divided by the upsample rate are added to <paramref name="into"/>.
    /// </summary>
    private void CombineHistograms(float[] into, int downsampleRate, int startIdx)
    {
        long cells = (long)Bins * downsampleRate;
        long upsampled = (long)Bins * UpsampleRate;
        if (startIdx < 0 || startIdx + upsampled > cells)
            throw new InvalidOperationException($"{Name}: the old histogram ({upsampled} cells from {startIdx}) does not fit the combined grid of {cells} cells");
        // The running integral over the upsampled region; cells of zeros before and after it leave the sum unchanged.
        var integral = new double[upsampled];
        double acc = 0;
        for (long j = 0; j < upsampled; j++)
        {
            acc += _histogram[j / UpsampleRate];
            integral[j] = acc;
        }
        double IntegralAt(long cell) => cell < startIdx ? 0.0 : cell >= startIdx + upsampled ? acc : integral[cell - startIdx];
        float shifted = 0f;
        for (int k = 0; k < Bins; k++)
        {
            double sample = IntegralAt((long)(k + 1) * downsampleRate - 1);
            into[k] += (float)((sample - shifted) / UpsampleRate);
            shifted = (float)sample;
        }
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams()
    {
        if (MinVal == float.PositiveInfinity && MaxVal == float.NegativeInfinity)
            return QParams.Default;
        var (newMin, newMax) = NonLinearParamSearch();
        return QParamsMath.Calculate(Settings, new[] { newMin }, new[] { newMax });
    }

    /// <summary>
    /// <c>_non_linear_param_search</c>: moves the start or end bin inward by quantile steps of 1e-5 (whichever side
    /// moves further) while the L2 quantization error does not grow; the chosen bins' edges are the new min and max.
    /// </summary>
    internal (float Min, float Max) NonLinearParamSearch()
    {
        float binWidth = (MaxVal - MinVal) / (float)Bins;
        double total = TorchKernels.Sum(_histogram);
        var cSum = TorchKernels.CumSum(_histogram);
        const double stepsize = 1e-5;
        double alpha = 0.0, beta = 1.0;
        int startBin = 0, endBin = Bins - 1;
        double normMin = double.PositiveInfinity;
        while (alpha < beta)
        {
            double nextAlpha = alpha + stepsize;
            double nextBeta = beta - stepsize;
            // The Python scalar a float32 element is compared with is narrowed to float32 first.
            float lowQuantile = (float)(nextAlpha * total), highQuantile = (float)(nextBeta * total);
            int l = startBin, r = endBin;
            while (l < endBin && cSum[l] < lowQuantile) l++;
            while (r > startBin && cSum[r] > highQuantile) r--;
            int nextStart = startBin, nextEnd = endBin;
            if (l - startBin > endBin - r)
            {
                nextStart = l;
                alpha = nextAlpha;
            }
            else
            {
                nextEnd = r;
                beta = nextBeta;
            }
            if (nextStart == startBin && nextEnd == endBin) continue;
            double norm = QuantizationError(nextStart, nextEnd);
            if (norm > normMin) break;
            normMin = norm;
            startBin = nextStart;
            endBin = nextEnd;
        }
        return (MinVal + binWidth * (float)startBin, MinVal + binWidth * (float)(endBin + 1));
    }

    /// <summary><c>_compute_quantization_error</c>: the L2 error of quantizing the histogram onto 256 bins spanning
    /// bins <paramref name="startBin"/>..<paramref name="endBin"/>; Python floats in float64, tensors in float32.</summary>
    private double QuantizationError(int startBin, int endBin)
    {
        double binWidth = ((double)MaxVal - MinVal) / Bins;
        double dstBinWidth = binWidth * (endBin - startBin + 1) / DstBins;
        if (dstBinWidth == 0.0) return 0.0;
        float bw = (float)binWidth, dbw = (float)dstBinWidth, halfDbw = (float)(dstBinWidth / 2), negHalfDbw = (float)(-dstBinWidth / 2);
        // _get_norm(tensor(-w/2), tensor(w/2), density) before the density: a float32 scalar.
        float fullNorm = (halfDbw * halfDbw * halfDbw - negHalfDbw * negHalfDbw * negHalfDbw) / 3f;
        var norm = new float[Bins];
        for (int i = 0; i < Bins; i++)
        {
            float srcBegin = (float)(i - startBin) * bw;
            float srcEnd = srcBegin + bw;
            float dstOfBegin = Math.Clamp(TorchKernels.FloorDiv(srcBegin, dbw), 0f, DstBins - 1);
            float dstOfBeginCenter = (dstOfBegin + 0.5f) * dbw;
            float dstOfEnd = Math.Clamp(TorchKernels.FloorDiv(srcEnd, dbw), 0f, DstBins - 1);
            float density = _histogram[i] / bw;
            float n = 0f;
            n += GetNorm(srcBegin - dstOfBeginCenter, halfDbw, density);
            n += (dstOfEnd - dstOfBegin - 1f) * (density * fullNorm);
            float dstOfEndCenter = dstOfEnd * dbw + halfDbw;
            n += GetNorm(negHalfDbw, srcEnd - dstOfEndCenter, density);
            norm[i] = n;
        }
        return TorchKernels.Sum(norm);
    }

    /// <summary><c>_get_norm</c>: density * (end^3 - begin^3) / 3 in float32.</summary>
    private static float GetNorm(float begin, float end, float density) => density * ((end * end * end - begin * begin * begin) / 3f);
}
