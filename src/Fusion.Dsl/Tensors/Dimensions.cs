namespace Fusion.Dsl.Tensors;

/// <summary>PyTorch's dimension indices, stated once for the engine and the ONNX exporter.</summary>
public static class Dimensions
{
    /// <summary>
    /// <paramref name="dim"/> made non-negative for a tensor of <paramref name="rank"/> (PyTorch's wrap: -1 is the last),
    /// or null when it is out of range. A scalar (rank 0) takes 0 and -1, as in PyTorch.
    /// </summary>
    public static int? Wrap(long dim, int rank)
    {
        var r = Math.Max(rank, 1);
        if (dim < -r || dim >= r) return null;
        return (int)(dim < 0 ? dim + r : dim);
    }
}
