using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.mean(x, dims)</c> on a per-tensor quantized tensor over its innermost dimensions (the
/// global pooling <c>x.mean([2, 3])</c> of torchvision's shufflenet_v2); the output keeps the input's qparams. PyTorch
/// 1.13 runs one of two paths, which round differently, and so does this: on an input that is contiguous (also a
/// channels-last one with one channel or 1×1 planes) its integer kernel, q = nearbyint(Σq / n), the zero point never
/// subtracted; on a channels-last input (what a quantized convolution returns on the onednn engine) it dequantizes,
/// takes the float32 mean (the sum, then divided by n) and quantizes it again with the input's qparams. That float sum
/// is PyTorch's AVX2 reduction (the capability it uses by default, also on AVX-512 CPUs), reproduced in its order: the
/// channels in blocks of 32 (8 lanes × 4) each summed along the plane by its four-level cascade, the remaining
/// channels by its row sum (four interleaved cascades, the tail added to the first, then the four added in order).
/// Measured: every float sum equal to PyTorch's for 1 to 1024 channels and 2×2 to 14×14 planes.</summary>
public sealed class QuantizedMean
{
    private const string Name = "quantized mean";

    /// <summary>Creates the module.</summary>
    /// <param name="dims">The reduced dimensions (negative count from the end): the innermost ones, each once.</param>
    /// <param name="keepDim">Whether the reduced dimensions stay as dimensions of size 1.</param>
    /// <exception cref="ArgumentException">No dimensions.</exception>
    public QuantizedMean(IReadOnlyList<int> dims, bool keepDim = false)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Count == 0) throw new ArgumentException($"{Name}: give the dimensions to reduce", nameof(dims));
        Dims = [.. dims];
        KeepDim = keepDim;
    }

    /// <summary>The reduced dimensions as given.</summary>
    public IReadOnlyList<int> Dims { get; }

    /// <summary>Whether the reduced dimensions are kept with size 1.</summary>
    public bool KeepDim { get; }

    /// <summary>The forward pass of a contiguous input.</summary>
    /// <exception cref="ArgumentException">A per-channel input, a dimension out of range or repeated, reduced dimensions
    /// that are not the innermost ones, or nothing to average.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, channelsLast: false);

    /// <summary>The forward pass of an input whose PyTorch memory layout is channels-last when <paramref name="channelsLast"/>.</summary>
    internal QuantizedTensor Forward(QuantizedTensor input, bool channelsLast)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, Name);
        int rank = input.Rank;
        var reduced = new bool[rank];
        foreach (var d in Dims)
        {
            if (d < -rank || d >= rank) throw new ArgumentOutOfRangeException(nameof(input), $"{Name}: dim {d} is out of range for rank {rank}");
            var axis = d < 0 ? d + rank : d;
            if (reduced[axis]) throw new ArgumentException($"{Name}: dim {d} is given twice");
            reduced[axis] = true;
        }
        int first = rank - Dims.Count;
        for (int d = first; d < rank; d++)
            if (!reduced[d])
                throw new ArgumentException($"{Name} over dims [{string.Join(", ", Dims)}] of a rank-{rank} tensor: only the innermost dimensions are averaged here");
        int n = 1, outer = 1;
        for (int d = 0; d < rank; d++) { if (d < first) outer *= input.Size(d); else n *= input.Size(d); }
        if (n == 0) throw new ArgumentException($"{Name} over an empty plane of {Tensor.ShapeString(input.RawShape)}");
        var shape = Enumerable.Range(0, rank).Where(d => d < first || KeepDim).Select(d => d < first ? input.Size(d) : 1).ToArray();
        var x = input.IntRepr();
        var y = new int[outer];
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        if (!channelsLast || rank != 4 || input.Size(1) == 1 || n == 1)
        {
            for (int o = 0; o < outer; o++)
            {
                long sum = 0;
                for (int i = o * n; i < (o + 1) * n; i++) sum += x[i];
                y[o] = (int)Math.Clamp(Math.Round((double)sum / n, MidpointRounding.ToEven), qmin, qmax);
            }
        }
        else
        {
            float scale = (float)input.Scale, inverse = 1f / scale, count = n;
            long zp = input.ZeroPoint;
            int channels = input.Size(1), vectorized = channels / VectorBlock * VectorBlock;
            var plane = new float[n];
            for (int o = 0; o < outer; o++)
            {
                for (int i = 0; i < n; i++) plane[i] = (float)(x[o * n + i] - zp) * scale;
                float sum = o % channels < vectorized ? CascadeSum(plane, 0, 1, n) : RowSum(plane);
                y[o] = QuantizedTensor.QuantizeValue(sum / count, inverse, zp, qmin, qmax);
            }
        }
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }

    /// <summary>The channels PyTorch's AVX2 outer reduction sums together: 4 vectors of 8 float32 lanes.</summary>
    private const int VectorBlock = 32;

    /// <summary>PyTorch's <c>multi_row_sum</c> for one row: <paramref name="size"/> elements from <paramref name="start"/>
    /// <paramref name="stride"/> apart, added into the first of four levels; every 2^p elements (p = max(4,
    /// ceil(log2 size) / 4)) the first level is added into the second, and so on up while the count is a multiple of the
    /// next power; the rest goes into the first level, then the levels are added in order.</summary>
    private static float CascadeSum(float[] values, int start, int stride, int size)
    {
        const int levels = 4;
        int power = Math.Max(4, (size > 1 ? 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(size - 1)) : 0) / levels);
        int step = 1 << power, mask = step - 1;
        Span<float> acc = stackalloc float[levels];
        int i = 0;
        while (i + step <= size)
        {
            for (int j = 0; j < step; j++, i++) acc[0] += values[start + i * stride];
            for (int j = 1; j < levels; j++)
            {
                acc[j] += acc[j - 1];
                acc[j - 1] = 0f;
                if ((i & (mask << (j * power))) != 0) break;
            }
        }
        for (; i < size; i++) acc[0] += values[start + i * stride];
        for (int j = 1; j < levels; j++) acc[0] += acc[j];
        return acc[0];
    }

    /// <summary>PyTorch's <c>row_sum</c>: the row read as rows of four, each of the four columns summed by
    /// <see cref="CascadeSum"/>, the elements after the last full four added to the first, then the four added in order.</summary>
    private static float RowSum(float[] values)
    {
        int size = values.Length, quads = size / 4;
        Span<float> parts = stackalloc float[4];
        for (int k = 0; k < 4; k++) parts[k] = quads > 0 ? CascadeSum(values, k, 4, quads) : 0f;
        for (int i = quads * 4; i < size; i++) parts[0] += values[i];
        return parts[0] + parts[1] + parts[2] + parts[3];
    }
}
