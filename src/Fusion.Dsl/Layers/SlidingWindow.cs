namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's output length along one spatial axis of the sliding-window layers (convolutions and pooling), stated once for
/// the engine, the ONNX exporter and the test generators. In 64-bit arithmetic: with every argument up to
/// <see cref="Tensors.Limits.MaxArgument"/> and an input up to <see cref="int.MaxValue"/> no step overflows; a result
/// below 1 (the input is too small for the window) or too large is for the caller to refuse.
/// </summary>
public static class SlidingWindow
{
    /// <summary>
    /// A convolution's output length: <c>floor((input + padLeft + padRight - dilation·(kernel-1) - 1) / stride) + 1</c>, with
    /// the padding already resolved to its two sides (<see cref="ConvPadding.Resolve"/>).
    /// </summary>
    public static long ConvOutput(long input, long kernel, long stride, long padLeft, long padRight, long dilation)
        => FloorDiv(input + padLeft + padRight - dilation * (kernel - 1) - 1, stride) + 1;

    /// <summary>
    /// A transposed convolution's output length:
    /// <c>(input-1)·stride - padLeft - padRight + dilation·(kernel-1) + outputPadding + 1</c>.
    /// </summary>
    public static long ConvTransposeOutput(long input, long kernel, long stride, long padLeft, long padRight, long dilation, long outputPadding)
        => (input - 1) * stride - padLeft - padRight + dilation * (kernel - 1) + outputPadding + 1;

    /// <summary>
    /// A pooling layer's window count, PyTorch's <c>pooling_output_shape</c>: the convolution's formula with padding on both
    /// sides, rounded up under <paramref name="ceilMode"/>, where the last window must still start inside the input or the
    /// left padding.
    /// </summary>
    public static long PoolOutput(long input, long kernel, long stride, long pad, long dilation, bool ceilMode)
    {
        var span = input + 2 * pad - dilation * (kernel - 1) - 1;
        var o = FloorDiv(ceilMode ? span + stride - 1 : span, stride) + 1;
        if (ceilMode && (o - 1) * stride >= input + pad) o--;
        return o;
    }

    // Floor division by a positive stride, as PyTorch's div_rtn: a window larger than the padded input gives a length
    // below 1, where C#'s truncating division would give 1.
    private static long FloorDiv(long a, long stride)
    {
        var q = Math.DivRem(a, stride, out var rem);
        return rem < 0 ? q - 1 : q;
    }
}
