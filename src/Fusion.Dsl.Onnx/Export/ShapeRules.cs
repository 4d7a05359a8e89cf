namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Output shapes of the operators the exporter writes, by PyTorch's formulas: the exporter needs them to choose operators
/// (Gemm or MatMul, which axes to squeeze, the Reshape that a partial flatten becomes) and to refuse a model that does not
/// fit the input shape before anything is written.
/// </summary>
internal static class ShapeRules
{
    /// <summary>A convolution's output length along one spatial axis (non-positive when the input is too small).</summary>
    public static int ConvOutput(int input, int kernel, int stride, int padLeft, int padRight, int dilation)
        => (int)Math.Floor((input + padLeft + padRight - (long)dilation * (kernel - 1) - 1) / (double)stride) + 1;

    /// <summary>A transposed convolution's output length along one spatial axis.</summary>
    public static int ConvTransposeOutput(int input, int kernel, int stride, int pad, int dilation, int outputPadding)
        => checked((input - 1) * stride - 2 * pad + dilation * (kernel - 1) + outputPadding + 1);

    /// <summary>A pooling window count along one axis, PyTorch's rule (with <c>ceil_mode</c>, the last window must start
    /// inside the input or the left padding).</summary>
    public static int PoolOutput(int input, int kernel, int stride, int pad, int dilation, bool ceilMode)
    {
        var span = input + 2 * pad - dilation * (kernel - 1) - 1;
        var o = (ceilMode ? (int)Math.Ceiling(span / (double)stride) : (int)Math.Floor(span / (double)stride)) + 1;
        if (ceilMode && (o - 1) * stride >= input + pad) o--;
        return o;
    }

    /// <summary>NumPy broadcasting of two shapes (ONNX's multidirectional broadcasting), or null when they do not broadcast.</summary>
    public static int[]? Broadcast(int[] a, int[] b)
    {
        var n = Math.Max(a.Length, b.Length);
        var r = new int[n];
        for (var i = 0; i < n; i++)
        {
            var x = i < n - a.Length ? 1 : a[i - (n - a.Length)];
            var y = i < n - b.Length ? 1 : b[i - (n - b.Length)];
            if (x != y && x != 1 && y != 1) return null;
            r[i] = x == 1 ? y : x;
        }
        return r;
    }

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
