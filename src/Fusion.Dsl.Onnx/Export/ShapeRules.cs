namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Shape arithmetic of the exporter's own, beside the core's output lengths (<see cref="Layers.SlidingWindow"/>) and
/// broadcasting (<see cref="Tensors.Broadcast"/>): the exporter tracks every value's shape to choose operators (Gemm or
/// MatMul, which axes to squeeze, the Reshape that a partial flatten becomes) and to refuse a model that does not fit the
/// input shape before anything is written.
/// </summary>
internal static class ShapeRules
{
    /// <summary>A dimension index made non-negative for <paramref name="rank"/> (PyTorch's wrap), or null when out of range.</summary>
    public static int? Axis(long dim, int rank)
    {
        var r = Math.Max(rank, 1);
        if (dim < -r || dim >= r) return null;
        return (int)(dim < 0 ? dim + r : dim);
    }

    /// <summary>The element count of a shape, checked.</summary>
    public static long Count(int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }
}
