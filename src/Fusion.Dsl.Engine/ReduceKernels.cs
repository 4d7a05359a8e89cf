using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>Reductions along dimensions: <c>mean</c> and <c>softmax</c>, accumulated in double and rounded once.</summary>
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
