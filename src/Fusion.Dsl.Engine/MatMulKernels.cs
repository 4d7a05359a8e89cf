using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// <c>torch.matmul</c> and <c>torch.bmm</c>: batched matrix products with PyTorch's rules for vectors (a 1-d operand
/// gains a dimension that the result drops) and for batch dimensions (broadcast). The right operand is transposed
/// once per call so that every output element is one contiguous dot product.
/// </summary>
internal static unsafe class MatMulKernels
{
    /// <summary><c>torch.matmul(a, b)</c>.</summary>
    public static Tensor MatMul(Tensor a, Tensor b, Pass pass)
    {
        if (a.Rank == 0 || b.Rank == 0)
            throw new EngineInputException($"matmul: both operands need at least one dimension, got {Tensor.ShapeString(a.Shape)} and {Tensor.ShapeString(b.Shape)}");
        var left = a.Rank == 1 ? a.Reshape(1, a.Size(0)) : a;
        var right = b.Rank == 1 ? b.Reshape(b.Size(0), 1) : b;
        int m = left.Size(-2), k = left.Size(-1), k2 = right.Size(-2), n = right.Size(-1);
        if (k != k2)
            throw new EngineInputException($"matmul: {Tensor.ShapeString(a.Shape)} @ {Tensor.ShapeString(b.Shape)}: the inner sizes differ ({k} and {k2})");
        var batch = TensorOps.BroadcastShape(left.Shape[..^2], right.Shape[..^2]);
        left = ShapeKernels.Expand(left, [.. batch, m, k]);
        right = ShapeKernels.Expand(right, [.. batch, k, n]);
        var y = Product(left, right, Tensor.Product(batch), m, k, n, pass);
        var shape = new List<int>(batch);
        if (a.Rank > 1) shape.Add(m);
        if (b.Rank > 1) shape.Add(n);
        return y.Reshape([.. shape]);
    }

    /// <summary><c>torch.bmm(a, b)</c>: <c>[B, M, K] @ [B, K, N]</c>, no broadcasting.</summary>
    public static Tensor Bmm(Tensor a, Tensor b, Pass pass)
    {
        if (a.Rank != 3 || b.Rank != 3 || a.Size(0) != b.Size(0) || a.Size(2) != b.Size(1))
            throw new EngineInputException($"bmm: expected [B, M, K] and [B, K, N], got {Tensor.ShapeString(a.Shape)} and {Tensor.ShapeString(b.Shape)}");
        return Product(a, b, a.Size(0), a.Size(1), a.Size(2), b.Size(2), pass);
    }

    /// <summary><paramref name="batch"/> products of contiguous <c>[M, K]</c> and <c>[K, N]</c> matrices (sizes checked by the callers).</summary>
    private static Tensor Product(Tensor a, Tensor b, int batch, int m, int k, int n, Pass pass)
    {
        var bt = ShapeKernels.Transpose(b.Reshape(batch, k, n), 1, 2).RawFloat32;
        var x = a.RawFloat32;
        var output = pass.Output(checked(batch * m * n));
        Par.For(batch * m, pass.Threads, (long)k * n, row =>
        {
            var p = row / m;
            fixed (float* xp = x, bp = bt)
            {
                var arow = xp + (long)row * k;
                for (var j = 0; j < n; j++) output[(long)row * n + j] = LinearKernels.Dot(arow, bp + ((long)p * n + j) * k, k);
            }
        });
        return Tensor.Adopt(output, [batch, m, n]);
    }
}
