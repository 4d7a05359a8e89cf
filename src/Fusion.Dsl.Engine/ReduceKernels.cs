using System.Numerics;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>Reductions along dimensions: <c>mean</c> and <c>softmax</c>, accumulated in double (a softmax along a contiguous
/// row takes its exponentials in float32 vectors, as PyTorch's does; see <c>SoftmaxRow</c>).</summary>
internal static class ReduceKernels
{
    /// <summary>
    /// <c>x.mean(dims, keepdim)</c>; <paramref name="dims"/> null (or empty, as PyTorch reads <c>dim=[]</c>) is every
    /// dimension. A repeated dimension is refused, as PyTorch does.
    /// </summary>
    public static Tensor Mean(Tensor x, int[]? dims, bool keepdim)
    {
        var reduced = new bool[x.Rank];
        if (dims is null || dims.Length == 0) Array.Fill(reduced, true);
        else
            foreach (var d in dims)
            {
                var k = TensorOps.Dim(d, x.Rank, "mean");
                if (reduced[k]) throw new EngineInputException($"mean: dimension {k} appears more than once in dim {Tensor.ShapeString(dims)}");
                reduced[k] = true;
            }
        var outShape = new List<int>();
        var keptStrides = new long[x.Rank];
        long n = 1;
        for (var d = 0; d < x.Rank; d++)
        {
            if (reduced[d]) { n *= x.Size(d); if (keepdim) outShape.Add(1); }
            else outShape.Add(x.Size(d));
        }
        // Each input dimension's stride in the output (0 where it is reduced), so one pass adds every element in place.
        long s = 1;
        for (var d = x.Rank - 1; d >= 0; d--)
            if (!reduced[d]) { keptStrides[d] = s; s *= x.Size(d); }
        var sums = new double[s];
        var src = x.RawFloat32;
        var idx = new int[x.Rank];
        long at = 0;
        for (var i = 0; i < src.Length; i++)
        {
            sums[at] += src[i];
            for (var d = x.Rank - 1; d >= 0; d--)
            {
                at += keptStrides[d];
                if (++idx[d] < x.Size(d)) break;
                at -= keptStrides[d] * x.Size(d);
                idx[d] = 0;
            }
        }
        var output = Pass.Fresh((int)s);
        for (var i = 0; i < s; i++) output[i] = n == 0 ? float.NaN : (float)(sums[i] / n);
        return Tensor.Adopt(output, [.. outShape]);
    }

    /// <summary>
    /// <c>softmax(x, dim)</c>: <c>exp(x − max) / Σ exp(x − max)</c> along the dimension (the shift by the maximum keeps the
    /// exponentials finite, as PyTorch's does). A null dimension is PyTorch's legacy choice: 0 for ranks 0, 1 and 3, else 1.
    /// </summary>
    public static Tensor Softmax(Tensor x, long? dim, Pass pass)
    {
        var d = dim is { } given ? TensorOps.Dim(given, x.Rank, "softmax") : x.Rank is 0 or 1 or 3 ? 0 : 1;
        var size = x.Rank == 0 ? 1 : x.Size(d);
        var inner = 1;
        for (var k = d + 1; k < x.Rank; k++) inner *= x.Size(k);
        var outer = size * inner == 0 ? 0 : x.Count / (size * inner);
        var src = x.RawFloat32;
        var output = pass.Output(src.Length);
        if (inner == 1 && size > 0)
        {
            Par.For(outer, pass.Threads, 3L * size, o => SoftmaxRow(src, output, (long)o * size, size));
            return Tensor.Adopt(output, x.Shape.ToArray());
        }
        Par.For(outer, pass.Threads, 3L * size * inner, o =>
        {
            var e = new double[size];
            for (var i = 0; i < inner; i++)
            {
                var start = (long)o * size * inner + i;
                var max = float.NegativeInfinity;
                for (var k = 0; k < size; k++) max = MathF.Max(max, src[start + k * inner]);
                double sum = 0;
                for (var k = 0; k < size; k++) sum += e[k] = Math.Exp(src[start + k * inner] - (double)max);
                for (var k = 0; k < size; k++) output[start + k * inner] = (float)(e[k] / sum);
            }
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary>
    /// One contiguous row of <see cref="Softmax"/> (the last axis, as every attention's is): the maximum, then
    /// <c>e = exp(x − max)</c> in float32 vectors of <see cref="Vector{T}"/>'s width through <see cref="FloatExp"/> (written
    /// to the output), summed in float64 lanes, then each <c>e</c> times the float32 reciprocal of the sum, as PyTorch's vectorised softmax scales. A tail
    /// element takes the same exponential on one lane, so its bits do not depend on where the row's vectors end. Measured
    /// (`tools/engine-bench softmax 2`, vit_b_16's and swin_t's attention shapes): 9.7-11.4 ns per element per CPU-second
    /// with a float64 <c>Math.Exp</c> per element.
    /// </summary>
    private static unsafe void SoftmaxRow(float[] src, float[] output, long start, int size)
    {
        var n = Vector<float>.Count;
        fixed (float* s0 = src, d0 = output)
        {
            float* s = s0 + start, d = d0 + start;
            var k = 0;
            var max = float.NegativeInfinity;
            if (size >= n)
            {
                var m = Vector.Load(s);
                for (k = n; k <= size - n; k += n) m = Vector.Max(m, Vector.Load(s + k));
                for (var lane = 0; lane < n; lane++) max = MathF.Max(max, m[lane]);
            }
            for (; k < size; k++) max = MathF.Max(max, s[k]);
            var vmax = new Vector<float>(max);
            var lo = Vector<double>.Zero;
            var hi = Vector<double>.Zero;
            for (k = 0; k <= size - n; k += n)
            {
                var e = FloatExp.Exp(Vector.Load(s + k) - vmax);
                e.Store(d + k);
                Vector.Widen(e, out var l, out var h);
                lo += l;
                hi += h;
            }
            var sum = Vector.Sum(lo + hi);
            for (; k < size; k++) sum += d[k] = FloatExp.Exp(s[k] - max);
            var scale = (float)(1.0 / sum);
            var vs = new Vector<float>(scale);
            for (k = 0; k <= size - n; k += n) (Vector.Load(d + k) * vs).Store(d + k);
            for (; k < size; k++) d[k] *= scale;
        }
    }

    /// <summary><c>F.normalize(x, dim=-1)</c>: each last-dimension row divided by max(‖row‖₂, 1e-12).</summary>
    public static Tensor Normalize(Tensor x)
    {
        if (x.Rank == 0) throw new EngineInputException("normalize: expected a tensor with at least one dimension");
        var row = x.Size(-1);
        var src = x.RawFloat32;
        var output = Pass.Fresh(src.Length);
        for (var start = 0; row > 0 && start < src.Length; start += row)
        {
            double sq = 0;
            for (var i = start; i < start + row; i++) sq += (double)src[i] * src[i];
            var norm = Math.Max(Math.Sqrt(sq), 1e-12);
            for (var i = start; i < start + row; i++) output[i] = (float)(src[i] / norm);
        }
        return Tensor.Adopt(output, x.Shape.ToArray());
    }
}
