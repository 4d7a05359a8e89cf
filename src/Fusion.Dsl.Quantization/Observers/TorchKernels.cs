namespace Fusion.Dsl.Quantization;

/// <summary>
/// The few ATen CPU kernels (PyTorch 1.13) whose rounding the histogram observer's results depend on, reproduced
/// operation for operation in float32: <c>torch.histc</c>, <c>torch.sum</c>'s cascade summation, <c>torch.cumsum</c>
/// and floor division.
/// </summary>
internal static class TorchKernels
{
    /// <summary>Float32 lanes of ATen's <c>Vectorized&lt;float&gt;</c> (AVX2 and the default build alike).</summary>
    private const int Lanes = 8;

    /// <summary>Independent vector accumulators of ATen's <c>row_sum</c> (its <c>ilp_factor</c>).</summary>
    private const int Ilp = 4;

    /// <summary>Levels of ATen's <c>multi_row_sum</c> cascade.</summary>
    private const int Levels = 4;

    /// <summary>
    /// <c>torch.histc(x, bins, min, max)</c> on float32: when min equals max the data's own extrema are used, and if
    /// those are equal too the range is widened by 1 each side; the edges are the float32 ends of that range; an
    /// element outside them is skipped; an element's bin is <c>(long)((x - lo) * bins / (hi - lo))</c> in float32,
    /// the top edge belonging to the last bin (ATen's LINEAR_INTERPOLATION histogram kernel).
    /// </summary>
    public static float[] Histc(ReadOnlySpan<float> x, int bins, double min, double max)
    {
        double lo = min, hi = max;
        if (lo == hi)
        {
            var (a, b) = Batch.AMinMax(x);
            (lo, hi) = (a, b);
        }
        if (lo == hi)
        {
            lo -= 1;
            hi += 1;
        }
        if (!double.IsFinite(lo) || !double.IsFinite(hi) || !(lo < hi))
            throw new InvalidOperationException($"torch.histc: range of [{lo}, {hi}] is not finite or empty");
        float left = (float)lo, right = (float)hi;
        var hist = new float[bins];
        foreach (var v in x)
        {
            if (!(v >= left && v <= right)) continue;
            long pos = (long)((v - left) * (float)bins / (right - left));
            if (pos >= bins) pos = bins - 1;
            hist[pos] += 1f;
        }
        return hist;
    }

    /// <summary>
    /// <c>torch.sum</c> of a contiguous float32 vector as ATen's <c>cascade_sum</c> adds it: 8-lane vectors summed by
    /// four interleaved accumulators in a four-level cascade, the accumulators added together, the scalar tail added,
    /// then the lanes added in order. Returned widened to double, as <c>.item()</c> does.
    /// </summary>
    public static double Sum(ReadOnlySpan<float> x)
    {
        int vecCount = x.Length / Lanes;
        var acc = RowSum(x, vecCount);
        float total = 0f;
        for (int k = vecCount * Lanes; k < x.Length; k++) total += x[k];
        for (int l = 0; l < Lanes; l++) total += acc[l];
        return total;
    }

    private static float[] RowSum(ReadOnlySpan<float> x, int vecCount)
    {
        int sizeIlp = vecCount / Ilp;
        var partial = MultiRowSum(x, sizeIlp);
        for (int i = sizeIlp * Ilp; i < vecCount; i++) AddVector(partial[0], x, i);
        for (int k = 1; k < Ilp; k++)
            for (int l = 0; l < Lanes; l++) partial[0][l] += partial[k][l];
        return partial[0];
    }

    private static float[][] MultiRowSum(ReadOnlySpan<float> x, int size)
    {
        int levelPower = Math.Max(4, CeilLog2(size) / Levels);
        int levelStep = 1 << levelPower;
        int levelMask = levelStep - 1;
        var acc = new float[Levels][][];
        for (int j = 0; j < Levels; j++)
        {
            acc[j] = new float[Ilp][];
            for (int k = 0; k < Ilp; k++) acc[j][k] = new float[Lanes];
        }
        int i = 0;
        while (i + levelStep <= size)
        {
            for (int j = 0; j < levelStep; j++, i++)
                for (int k = 0; k < Ilp; k++) AddVector(acc[0][k], x, i * Ilp + k);
            for (int j = 1; j < Levels; j++)
            {
                for (int k = 0; k < Ilp; k++)
                    for (int l = 0; l < Lanes; l++)
                    {
                        acc[j][k][l] += acc[j - 1][k][l];
                        acc[j - 1][k][l] = 0f;
                    }
                if ((i & (levelMask << (j * levelPower))) != 0) break;
            }
        }
        for (; i < size; i++)
            for (int k = 0; k < Ilp; k++) AddVector(acc[0][k], x, i * Ilp + k);
        for (int j = 1; j < Levels; j++)
            for (int k = 0; k < Ilp; k++)
                for (int l = 0; l < Lanes; l++) acc[0][k][l] += acc[j][k][l];
        return acc[0];
    }

    private static void AddVector(float[] into, ReadOnlySpan<float> x, int vector)
    {
        for (int l = 0; l < Lanes; l++) into[l] += x[vector * Lanes + l];
    }

    /// <summary>c10's <c>CeilLog2</c>: 1 for sizes up to 2, else the number of bits of size - 1.</summary>
    private static int CeilLog2(int x) => x <= 2 ? 1 : 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(x - 1));

    /// <summary><c>torch.cumsum</c> of float32: a double accumulator (CPU's <c>acc_type</c>), each prefix narrowed to float32.</summary>
    public static float[] CumSum(ReadOnlySpan<float> x)
    {
        var result = new float[x.Length];
        double acc = 0;
        for (int i = 0; i < x.Length; i++)
        {
            acc += x[i];
            result[i] = (float)acc;
        }
        return result;
    }

    /// <summary><c>torch.div(a, b, rounding_mode='floor')</c> for float32 (ATen's <c>div_floor</c> via fmod).</summary>
    public static float FloorDiv(float a, float b)
    {
        if (b == 0f) return a / b;
        float mod = a % b;
        float div = (a - mod) / b;
        if (mod != 0f && (b < 0f) != (mod < 0f)) div -= 1f;
        if (div == 0f) return MathF.CopySign(0f, a / b);
        float floordiv = MathF.Floor(div);
        if (div - floordiv > 0.5f) floordiv += 1f;
        return floordiv;
    }
}
