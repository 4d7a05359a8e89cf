namespace Fusion.Dsl.Tensors;

/// <summary>NumPy broadcasting (PyTorch's elementwise operations, ONNX's multidirectional broadcasting), stated once.</summary>
public static class Broadcast
{
    /// <summary>
    /// The shape two tensors broadcast to: aligned at the last dimension, each size taken from whichever side is not 1, or
    /// null when a pair of sizes differs and neither is 1.
    /// </summary>
    public static int[]? Shape(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        var rank = Math.Max(a.Length, b.Length);
        var shape = new int[rank];
        for (var i = 0; i < rank; i++)
        {
            var da = i < rank - a.Length ? 1 : a[i - (rank - a.Length)];
            var db = i < rank - b.Length ? 1 : b[i - (rank - b.Length)];
            if (da != db && da != 1 && db != 1) return null;
            shape[i] = da == 1 ? db : da;
        }
        return shape;
    }

    /// <summary>
    /// The row-major strides of <paramref name="shape"/> read in the indices of a broadcast shape of rank
    /// <paramref name="rank"/>: 0 along every dimension it broadcasts (size 1) or lacks (the leading ones).
    /// </summary>
    public static int[] Strides(ReadOnlySpan<int> shape, int rank)
    {
        var strides = new int[rank];
        var s = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            strides[rank - shape.Length + i] = shape[i] == 1 ? 0 : s;
            s *= shape[i];
        }
        return strides;
    }
}
