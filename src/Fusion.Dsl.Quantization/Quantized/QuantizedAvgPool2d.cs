using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's quantized <c>AvgPool2d</c> (<c>F.avg_pool2d</c> on a quantized tensor, as torchvision's
/// inception_v3 calls it): each window of a [N, C, H, W] (or [C, H, W]) per-tensor quantized tensor averaged, the output
/// keeping the input's qparams. With s = Σ(q - zp) over the window's elements inside the input and d its divisor (the
/// padded window's size under count_include_pad, else the inside count, or divisor_override), PyTorch 1.13 runs one of
/// two kernels, which round ties differently, and so does this: on a channels-last input (also a contiguous one with
/// C = 1 or 1×1 planes) its NHWC kernel, q = zp + nearbyint(s · (float)(1/d)); otherwise its NCHW kernel,
/// q = nearbyint(s · (float)(1/d) + zp), the zero point added in float32 before rounding. Both saturate to the dtype.</summary>
public sealed class QuantizedAvgPool2d
{
    private const string Name = "quantized AvgPool2d";

    /// <summary>Creates the module.</summary>
    /// <param name="kernel">The window (height, width), each at least 1.</param>
    /// <param name="stride">The stride (height, width), each at least 1 (PyTorch's default is the kernel).</param>
    /// <param name="padding">The padding (height, width), each at least 0 and at most half the kernel.</param>
    /// <param name="ceilMode">Whether the output size rounds up.</param>
    /// <param name="countIncludePad">Whether the padding counts in the divisor (PyTorch's default).</param>
    /// <param name="divisorOverride">A divisor to use instead, at least 1, or null.</param>
    /// <exception cref="ArgumentException">An argument out of range (the message names which).</exception>
    public QuantizedAvgPool2d((int Height, int Width) kernel, (int Height, int Width) stride, (int Height, int Width) padding,
        bool ceilMode = false, bool countIncludePad = true, int? divisorOverride = null)
    {
        Limits.RequireArguments(Name, "kernel_size", new[] { kernel.Height, kernel.Width }, 1);
        Limits.RequireArguments(Name, "stride", new[] { stride.Height, stride.Width }, 1);
        Limits.RequireArguments(Name, "padding", new[] { padding.Height, padding.Width }, 0);
        if (2 * padding.Height > kernel.Height || 2 * padding.Width > kernel.Width)
            throw new ArgumentException($"{Name}: pad should be at most half of kernel size, got padding {padding} and kernel_size {kernel}");
        if (divisorOverride is < 1) throw new ArgumentException($"{Name}: divisor_override must be at least 1, got {divisorOverride}");
        (Kernel, Stride, Padding, CeilMode, CountIncludePad, DivisorOverride) = (kernel, stride, padding, ceilMode, countIncludePad, divisorOverride);
    }

    /// <summary>The window (height, width).</summary>
    public (int Height, int Width) Kernel { get; }

    /// <summary>The stride (height, width).</summary>
    public (int Height, int Width) Stride { get; }

    /// <summary>The padding (height, width).</summary>
    public (int Height, int Width) Padding { get; }

    /// <summary>Whether the output size rounds up.</summary>
    public bool CeilMode { get; }

    /// <summary>Whether the padding counts in the divisor.</summary>
    public bool CountIncludePad { get; }

    /// <summary>The divisor used instead of the window's, or null.</summary>
    public int? DivisorOverride { get; }

    /// <summary>The forward pass of a contiguous (NCHW) input.</summary>
    /// <param name="input">A per-tensor quantized tensor of rank 3 or 4.</param>
    /// <exception cref="ArgumentException">Another rank, a per-channel input, or an input too small for the window.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, channelsLast: false);

    /// <summary>The forward pass of an input whose PyTorch memory layout is channels-last when <paramref name="channelsLast"/>.</summary>
    internal QuantizedTensor Forward(QuantizedTensor input, bool channelsLast)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, Name);
        if (input.Rank is not (3 or 4))
            throw new ArgumentException($"{Name} expects input of shape [N, C, H, W] or [C, H, W], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int h = input.Size(-2), w = input.Size(-1), planes = input.Count / Math.Max(1, h * w);
        long oh = SlidingWindow.PoolOutput(h, Kernel.Height, Stride.Height, Padding.Height, 1, CeilMode);
        long ow = SlidingWindow.PoolOutput(w, Kernel.Width, Stride.Width, Padding.Width, 1, CeilMode);
        if (oh < 1 || ow < 1 || oh > int.MaxValue || ow > int.MaxValue)
            throw new ArgumentException($"{Name}: input {Tensor.ShapeString(input.RawShape)} gives output size {oh}x{ow} for kernel {Kernel}, stride {Stride}, padding {Padding}", nameof(input));
        var shape = (int[])input.RawShape.Clone();
        shape[^2] = (int)oh;
        shape[^1] = (int)ow;
        // PyTorch's NHWC kernel runs on channels-last memory, which a contiguous tensor with one channel or 1x1 planes also is.
        bool nhwc = input.Rank == 4 && (channelsLast || input.Size(1) == 1 || h * w == 1);
        var y = new int[QuantizedChecks.OutputCount(shape, Name)];
        var x = input.IntRepr();
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        int zp = (int)input.ZeroPoint;
        for (int p = 0; p < planes; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    int hs = i * Stride.Height - Padding.Height, ws = j * Stride.Width - Padding.Width;
                    int he = Math.Min(hs + Kernel.Height, h + Padding.Height), we = Math.Min(ws + Kernel.Width, w + Padding.Width);
                    int padded = (he - hs) * (we - ws);
                    (hs, ws, he, we) = (Math.Max(hs, 0), Math.Max(ws, 0), Math.Min(he, h), Math.Min(we, w));
                    int inside = (he - hs) * (we - ws);
                    long sum = -(long)zp * inside;
                    for (int a = hs; a < he; a++)
                        for (int b = ws; b < we; b++) sum += x[(p * h + a) * w + b];
                    float multiplier = (float)(1.0 / (DivisorOverride ?? (CountIncludePad ? padded : inside)));
                    float v = nhwc
                        ? MathF.Round((float)sum * multiplier, MidpointRounding.ToEven) + zp
                        : MathF.Round((float)sum * multiplier + zp, MidpointRounding.ToEven);
                    y[(p * (int)oh + i) * (int)ow + j] = (int)Math.Clamp(v, qmin, qmax);
                }
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }
}
