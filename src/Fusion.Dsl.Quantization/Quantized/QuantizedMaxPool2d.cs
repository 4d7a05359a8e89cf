using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's quantized <c>MaxPool2d</c>: the largest integer value in each window of a [N, C, H, W] (or
/// [C, H, W]) per-tensor quantized tensor; padded positions never win (PyTorch pads with -inf), and ceil_mode drops a
/// last window that would start in the right padding. Qparams and dtype are kept.</summary>
public sealed class QuantizedMaxPool2d
{
    private const string Name = "quantized MaxPool2d";

    /// <summary>Creates the module.</summary>
    /// <param name="kernel">The window (height, width), each at least 1.</param>
    /// <param name="stride">The stride (height, width), each at least 1 (PyTorch's default is the kernel).</param>
    /// <param name="padding">The padding (height, width), each at least 0 and at most half the kernel.</param>
    /// <param name="dilation">The dilation (height, width), each at least 1.</param>
    /// <param name="ceilMode">Whether the output size rounds up.</param>
    /// <exception cref="ArgumentException">An argument out of range (the message names which).</exception>
    public QuantizedMaxPool2d((int Height, int Width) kernel, (int Height, int Width) stride, (int Height, int Width) padding, (int Height, int Width) dilation, bool ceilMode = false)
    {
        Limits.RequireArguments(Name, "kernel_size", new[] { kernel.Height, kernel.Width }, 1);
        Limits.RequireArguments(Name, "stride", new[] { stride.Height, stride.Width }, 1);
        Limits.RequireArguments(Name, "padding", new[] { padding.Height, padding.Width }, 0);
        Limits.RequireArguments(Name, "dilation", new[] { dilation.Height, dilation.Width }, 1);
        if (2 * padding.Height > kernel.Height || 2 * padding.Width > kernel.Width)
            throw new ArgumentException($"{Name}: padding {padding} should be at most half of kernel_size {kernel}");
        (Kernel, Stride, Padding, Dilation, CeilMode) = (kernel, stride, padding, dilation, ceilMode);
    }

    /// <summary>The window (height, width).</summary>
    public (int Height, int Width) Kernel { get; }

    /// <summary>The stride (height, width).</summary>
    public (int Height, int Width) Stride { get; }

    /// <summary>The padding (height, width).</summary>
    public (int Height, int Width) Padding { get; }

    /// <summary>The dilation (height, width).</summary>
    public (int Height, int Width) Dilation { get; }

    /// <summary>Whether the output size rounds up.</summary>
    public bool CeilMode { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor of rank 3 or 4.</param>
    /// <param name="threads">The cores to share the planes among (the result does not depend on it).</param>
    /// <exception cref="ArgumentException">Another rank, a per-channel input, or an input too small for the window.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is below 1.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, Name);
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, $"{Name}: threads must be at least 1");
        if (input.Rank is not (3 or 4))
            throw new ArgumentException($"{Name} expects input of shape [N, C, H, W] or [C, H, W], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int h = input.Size(-2), w = input.Size(-1), planes = input.Count / Math.Max(1, h * w);
        int oh = OutputSize(h, Kernel.Height, Stride.Height, Padding.Height, Dilation.Height);
        int ow = OutputSize(w, Kernel.Width, Stride.Width, Padding.Width, Dilation.Width);
        var shape = (int[])input.RawShape.Clone();
        shape[^2] = oh;
        shape[^1] = ow;
        var y = GC.AllocateUninitializedArray<byte>(QuantizedChecks.OutputCount(shape, Name));
        var x = input.RawData;
        var options = new ParallelOptions { MaxDegreeOfParallelism = threads };
        if (input.DType == QuantizedDType.QInt8)
            Parallel.For(0, planes, options, p => Plane(MemoryMarshal.Cast<byte, sbyte>(x.AsSpan(p * h * w, h * w)), h, w,
                MemoryMarshal.Cast<byte, sbyte>(y.AsSpan(p * oh * ow, oh * ow)), oh, ow));
        else
            Parallel.For(0, planes, options, p => Plane(x.AsSpan(p * h * w, h * w), h, w, y.AsSpan(p * oh * ow, oh * ow), oh, ow));
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }

    /// <summary>One plane: for each output row, the element-wise maximum of the window's input rows (a vector pass over
    /// the row), then the maximum across each window's columns. Padded positions are skipped; a window wholly in the
    /// padding, which the padding rule leaves only to dilated windows, gives the dtype's lowest value as PyTorch's
    /// kernel starts from it.</summary>
    private void Plane<T>(ReadOnlySpan<T> x, int h, int w, Span<T> y, int oh, int ow) where T : unmanaged, INumber<T>, IMinMaxValue<T>
    {
        Span<T> rowMax = w <= 1024 ? stackalloc T[w] : new T[w];
        for (int i = 0; i < oh; i++)
        {
            var any = false;
            for (int a = 0; a < Kernel.Height; a++)
            {
                int iy = i * Stride.Height - Padding.Height + a * Dilation.Height;
                if (iy < 0 || iy >= h) continue;
                var row = x.Slice(iy * w, w);
                if (!any) row.CopyTo(rowMax);
                else MaxInto(rowMax, row);
                any = true;
            }
            var line = y.Slice(i * ow, ow);
            if (!any)
            {
                line.Fill(T.MinValue);
                continue;
            }
            for (int j = 0; j < ow; j++)
            {
                var best = T.MinValue;
                for (int b = 0; b < Kernel.Width; b++)
                {
                    int ix = j * Stride.Width - Padding.Width + b * Dilation.Width;
                    if (ix >= 0 && ix < w && rowMax[ix] > best) best = rowMax[ix];
                }
                line[j] = best;
            }
        }
    }

    /// <summary><paramref name="acc"/>[i] = max(<paramref name="acc"/>[i], <paramref name="row"/>[i]), vectorized.</summary>
    private static void MaxInto<T>(Span<T> acc, ReadOnlySpan<T> row) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; i + Vector256<T>.Count <= acc.Length; i += Vector256<T>.Count)
                Vector256.Max(Vector256.Create<T>(acc[i..]), Vector256.Create<T>(row[i..])).CopyTo(acc[i..]);
        for (; i < acc.Length; i++) acc[i] = T.Max(acc[i], row[i]);
    }

    /// <summary>PyTorch's <c>pooling_output_shape</c> (the core's <see cref="Layers.SlidingWindow.PoolOutput"/>), refused
    /// when the padded input is smaller than the dilated window.</summary>
    private int OutputSize(int size, int kernel, int stride, int padding, int dilation)
    {
        long output = Layers.SlidingWindow.PoolOutput(size, kernel, stride, padding, dilation, CeilMode);
        if (output < 1)
            throw new ArgumentException($"{Name}: the input size {size} padded by {padding} is smaller than the dilated window");
        return (int)output;
    }
}
