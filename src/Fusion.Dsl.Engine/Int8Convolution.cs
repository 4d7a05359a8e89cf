using System.Buffers;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The integer part of a quantized 2-d convolution (PyTorch's quantized <c>Conv2d</c>): for unsigned 8-bit activations
/// with zero point <c>z</c> and signed 8-bit weights, the exact int32 sums <c>Σ w·(x − z)</c> for every output, with
/// zero padding that pads with <c>z</c> (so a padded tap adds nothing), stride, dilation and groups. The weights are
/// packed once per group; each call lays the taps of one image and group out as a <c>[C_in/groups·kH·kW, H_out·W_out]</c>
/// matrix (none for a 1×1 convolution of stride 1 without padding, which reads the input itself) and multiplies it by
/// <see cref="Int8Gemm"/>; a depthwise convolution runs on <see cref="Int8Depthwise"/> instead. <see cref="Accumulate"/>
/// returns the sums; <see cref="Requantize(byte[], int, int, int, int, Int8Requantization, int)"/> requantizes them as they
/// leave the kernels with the caller's constants, and its other overload adds a residual (a quantized add) on the way out.
/// </summary>
public sealed class Int8Convolution
{
    private readonly Int8Weights[] _groups;

    /// <summary>The depthwise form (one input channel per group, within float32's exact sums), or null for the GEMM.</summary>
    private readonly Int8Depthwise? _depthwise;

    /// <summary>Packs the weights and checks the geometry.</summary>
    /// <param name="weights">Row-major <c>[C_out, C_in/groups, kH, kW]</c> signed 8-bit weights.</param>
    /// <param name="outChannels">C_out, divisible by <paramref name="groups"/>.</param>
    /// <param name="inChannelsPerGroup">C_in / groups.</param>
    /// <param name="kernel">(kH, kW), each at least 1.</param>
    /// <param name="stride">The stride (height, width), each at least 1.</param>
    /// <param name="padding">The zero padding (height, width), each at least 0.</param>
    /// <param name="dilation">The dilation (height, width), each at least 1.</param>
    /// <param name="groups">The number of groups, at least 1.</param>
    /// <exception cref="ArgumentException">A size is out of range, or the span does not hold exactly the weights the sizes describe.</exception>
    public Int8Convolution(ReadOnlySpan<sbyte> weights, int outChannels, int inChannelsPerGroup, (int Height, int Width) kernel,
        (int Height, int Width) stride, (int Height, int Width) padding, (int Height, int Width) dilation, int groups)
    {
        if (outChannels < 1 || inChannelsPerGroup < 1 || kernel.Height < 1 || kernel.Width < 1 || groups < 1)
            throw new ArgumentException($"an int8 convolution needs positive channels, kernel and groups, got C_out {outChannels}, C_in/groups {inChannelsPerGroup}, kernel {kernel}, groups {groups}");
        if (stride.Height < 1 || stride.Width < 1 || dilation.Height < 1 || dilation.Width < 1 || padding.Height < 0 || padding.Width < 0)
            throw new ArgumentException($"an int8 convolution needs stride and dilation of at least 1 and padding of at least 0, got {stride}, {dilation}, {padding}");
        if (outChannels % groups != 0)
            throw new ArgumentException($"groups ({groups}) must divide the {outChannels} output channels");
        var depth = checked(inChannelsPerGroup * kernel.Height * kernel.Width);
        if ((long)outChannels * depth != weights.Length)
            throw new ArgumentException($"{weights.Length} weights given for [{outChannels}, {inChannelsPerGroup}, {kernel.Height}, {kernel.Width}]");
        var perGroup = outChannels / groups;
        _groups = new Int8Weights[groups];
        for (var g = 0; g < groups; g++)
            _groups[g] = Int8Weights.Pack(weights.Slice(g * perGroup * depth, perGroup * depth), perGroup, depth);
        OutChannels = outChannels;
        InChannelsPerGroup = inChannelsPerGroup;
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
        Dilation = dilation;
        if (inChannelsPerGroup == 1 && groups > 1 && depth <= Int8Depthwise.MaxTaps) _depthwise = new Int8Depthwise(weights, this);
    }

    /// <summary>C_out.</summary>
    public int OutChannels { get; }

    /// <summary>C_in / groups.</summary>
    public int InChannelsPerGroup { get; }

    /// <summary>The number of groups.</summary>
    public int Groups => _groups.Length;

    /// <summary>(kH, kW).</summary>
    public (int Height, int Width) Kernel { get; }

    /// <summary>The stride (height, width).</summary>
    public (int Height, int Width) Stride { get; }

    /// <summary>The zero padding (height, width).</summary>
    public (int Height, int Width) Padding { get; }

    /// <summary>The dilation (height, width).</summary>
    public (int Height, int Width) Dilation { get; }

    /// <summary>The output size for an input of <paramref name="height"/> × <paramref name="width"/>.</summary>
    /// <exception cref="ArgumentException">The padded input is smaller than the dilated kernel along an axis (named).</exception>
    public (int Height, int Width) OutputSize(int height, int width)
        => (Axis(height, Kernel.Height, Stride.Height, Padding.Height, Dilation.Height, "height"),
            Axis(width, Kernel.Width, Stride.Width, Padding.Width, Dilation.Width, "width"));

    /// <summary>
    /// The int32 sums <c>[batch, C_out, H_out, W_out]</c> for the activations <paramref name="input"/>
    /// (<c>[batch, C_in, height, width]</c>, row-major) of zero point <paramref name="zeroPoint"/>, on up to
    /// <paramref name="threads"/> cores.
    /// </summary>
    /// <exception cref="ArgumentException">A size does not match the input's length, the input is smaller than the
    /// dilated kernel, the output would exceed an array, or the zero point is not a byte.</exception>
    public int[] Accumulate(byte[] input, int batch, int height, int width, int zeroPoint, int threads = 1)
    {
        var (oh, ow) = Check(input, batch, height, width, zeroPoint);
        var output = new int[batch * OutChannels * oh * ow];
        if (_depthwise is not null)
        {
            _depthwise.Run(input, batch, height, width, zeroPoint, threads, (sums, offset, _) =>
            {
                for (var i = 0; i < sums.Length; i++) output[offset + i] = (int)sums[i];
            });
            return output;
        }
        Run(input, batch, height, width, zeroPoint, threads, (g, x, xOffset, columns, outputOffset) =>
            Int8Gemm.Run(_groups[g], x, xOffset, columns, zeroPoint, output, outputOffset, threads));
        return output;
    }

    /// <summary>
    /// The requantized outputs <c>[batch, C_out, H_out, W_out]</c> as unsigned bytes: the sums of
    /// <see cref="Accumulate"/>, each requantized by <paramref name="requantization"/> for its output channel as it
    /// leaves the GEMM's registers (no int32 output is stored).
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="Accumulate"/>, or the requantization has another channel count.</exception>
    public byte[] Requantize(byte[] input, int batch, int height, int width, int zeroPoint, Int8Requantization requantization, int threads = 1)
        => RequantizeCore(input, batch, height, width, zeroPoint, requantization, null, null, threads);

    /// <summary>
    /// <see cref="Requantize(byte[], int, int, int, int, Int8Requantization, int)"/> followed by the quantized add
    /// <paramref name="add"/> of each output (its first operand) and the element of <paramref name="residual"/> at the
    /// same index (its second), in one pass: each output goes through the add as it leaves the requantization (in
    /// registers on the GEMM path; a plane at a time, in the L1 cache, on the depthwise one). The bits are those of the
    /// convolution and then <see cref="Int8Add.Run(byte[], byte[], byte[], int, int)"/>.
    /// </summary>
    /// <param name="input">As the other overload.</param>
    /// <param name="batch">As the other overload.</param>
    /// <param name="height">As the other overload.</param>
    /// <param name="width">As the other overload.</param>
    /// <param name="zeroPoint">As the other overload.</param>
    /// <param name="requantization">As the other overload.</param>
    /// <param name="residual">The add's second operand, <c>[batch, C_out, H_out, W_out]</c> stored bytes.</param>
    /// <param name="add">The add (unsigned: the convolution's output is quint8).</param>
    /// <param name="threads">As the other overload.</param>
    /// <exception cref="ArgumentException">As the other overload, the residual's length is not the output's, or the add is signed.</exception>
    public byte[] Requantize(byte[] input, int batch, int height, int width, int zeroPoint, Int8Requantization requantization,
        byte[] residual, Int8Add add, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(residual);
        ArgumentNullException.ThrowIfNull(add);
        if (add.Signed) throw new ArgumentException("a convolution's output is quint8; the fused add must be unsigned");
        return RequantizeCore(input, batch, height, width, zeroPoint, requantization, residual, add, threads);
    }

    private byte[] RequantizeCore(byte[] input, int batch, int height, int width, int zeroPoint, Int8Requantization requantization,
        byte[]? residual, Int8Add? add, int threads)
    {
        ArgumentNullException.ThrowIfNull(requantization);
        if (requantization.Channels != OutChannels)
            throw new ArgumentException($"the requantization has {requantization.Channels} channels, the convolution {OutChannels}");
        var (oh, ow) = Check(input, batch, height, width, zeroPoint);
        // Every byte is written below; a large output need not be zeroed first.
        var output = GC.AllocateUninitializedArray<byte>(batch * OutChannels * oh * ow);
        if (residual is not null && residual.Length != output.Length)
            throw new ArgumentException($"the residual holds {residual.Length} bytes, the output [{batch}, {OutChannels}, {oh}, {ow}] {output.Length}");
        if (_depthwise is not null)
        {
            _depthwise.Run(input, batch, height, width, zeroPoint, threads, (sums, offset, channel) =>
            {
                requantization.Row(sums, output.AsSpan(offset, sums.Length), channel);
                add?.Run(output, residual!, output, offset, sums.Length);
            });
            return output;
        }
        var perGroup = OutChannels / Groups;
        Run(input, batch, height, width, zeroPoint, threads, (g, x, xOffset, columns, outputOffset) =>
            Int8Gemm.Run(_groups[g], x, xOffset, columns, zeroPoint, requantization, g * perGroup, output, outputOffset, residual, add, threads));
        return output;
    }

    private (int Height, int Width) Check(byte[] input, int batch, int height, int width, int zeroPoint)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (batch < 1 || height < 1 || width < 1) throw new ArgumentException($"an int8 convolution needs a positive batch and size, got {batch}x{height}x{width}");
        if (zeroPoint is < 0 or > 255) throw new ArgumentException($"an unsigned 8-bit zero point is 0 to 255, got {zeroPoint}");
        var cin = (long)InChannelsPerGroup * Groups;
        if (batch * cin * height * width != input.Length)
            throw new ArgumentException($"{input.Length} activations given for [{batch}, {cin}, {height}, {width}]");
        var (oh, ow) = OutputSize(height, width);
        if ((long)batch * OutChannels * oh * ow > Array.MaxLength) throw new ArgumentException($"the output [{batch}, {OutChannels}, {oh}, {ow}] exceeds an array");
        return (oh, ow);
    }

    /// <summary>One GEMM of a group's packed weights: group, activations, their offset, columns, output offset.</summary>
    private delegate void GroupGemm(int group, byte[] x, int xOffset, int columns, int outputOffset);

    /// <summary>Runs <paramref name="gemm"/> for every image and group, on the input itself (1×1, stride 1, no padding)
    /// or on its gathered taps.</summary>
    private void Run(byte[] input, int batch, int height, int width, int zeroPoint, int threads, GroupGemm gemm)
    {
        var (oh, ow) = OutputSize(height, width);
        var columns = oh * ow;
        var cin = InChannelsPerGroup * Groups;
        var plane = height * width;
        var direct = Kernel == (1, 1) && Stride == (1, 1) && Padding == (0, 0);
        var taps = direct ? null : ArrayPool<byte>.Shared.Rent(checked(_groups[0].Depth * columns));
        var perGroup = OutChannels / Groups;
        for (var b = 0; b < batch; b++)
            for (var g = 0; g < Groups; g++)
            {
                var inputOffset = (b * cin + g * InChannelsPerGroup) * plane;
                var outputOffset = (b * OutChannels + g * perGroup) * columns;
                if (direct) gemm(g, input, inputOffset, columns, outputOffset);
                else
                {
                    Gather(input, inputOffset, height, width, oh, ow, (byte)zeroPoint, taps!, threads);
                    gemm(g, taps!, 0, columns, outputOffset);
                }
            }
        if (taps is not null) ArrayPool<byte>.Shared.Return(taps);
    }

    /// <summary>Lays out one image's group as rows (channel, kernel row, kernel column) of output pixels; a tap outside
    /// the input takes the zero point.</summary>
    private void Gather(byte[] input, int offset, int height, int width, int oh, int ow, byte zeroPoint, byte[] taps, int threads)
        => Par.For(InChannelsPerGroup, threads, (long)Kernel.Height * Kernel.Width * oh * ow, c =>
        {
            var row = c * Kernel.Height * Kernel.Width;
            var channel = input.AsSpan(offset + c * height * width, height * width);
            for (var i = 0; i < Kernel.Height; i++)
                for (var j = 0; j < Kernel.Width; j++, row++)
                {
                    var dst = taps.AsSpan(row * oh * ow, oh * ow);
                    if (Stride == (1, 1) && ow == width)
                    {
                        Shifted(channel, height, width, oh, i * Dilation.Height - Padding.Height, j * Dilation.Width - Padding.Width, zeroPoint, dst);
                        continue;
                    }
                    for (var y = 0; y < oh; y++)
                    {
                        var iy = y * Stride.Height - Padding.Height + i * Dilation.Height;
                        var line = dst.Slice(y * ow, ow);
                        if (iy < 0 || iy >= height)
                        {
                            line.Fill(zeroPoint);
                            continue;
                        }
                        var src = channel.Slice(iy * width, width);
                        var x0 = j * Dilation.Width - Padding.Width;
                        var sx = Stride.Width;
                        // Outputs [first, last) read inside the row; those before and after read padding.
                        var first = Math.Min(ow, x0 >= 0 ? 0 : (-x0 + sx - 1) / sx);
                        var last = Math.Max(first, Math.Min(ow, x0 >= width ? 0 : (width - 1 - x0) / sx + 1));
                        line[..first].Fill(zeroPoint);
                        line[last..].Fill(zeroPoint);
                        if (sx == 1) src.Slice(x0 + first, last - first).CopyTo(line[first..last]);
                        else
                            for (int x = first, ix = x0 + first * sx; x < last; x++, ix += sx) line[x] = src[ix];
                    }
                }
        });

    /// <summary>One tap's row of a stride-1 convolution whose output is as wide as its input: the input plane shifted
    /// by (<paramref name="dy"/>, <paramref name="dx"/>), so the rows that read inside the input are one copy, after
    /// which the |dx| columns that wrapped in from the neighbouring row, and the rows above and below the input, take
    /// the zero point (one call per tap instead of one per output row).</summary>
    private static void Shifted(ReadOnlySpan<byte> channel, int height, int width, int oh, int dy, int dx, byte zeroPoint, Span<byte> dst)
    {
        if (Math.Abs(dx) >= width)
        {
            // A dilated tap that lies beside the input for every output column.
            dst.Fill(zeroPoint);
            return;
        }
        // Output rows y read input row y + dy: those inside are [first, last).
        var first = Math.Clamp(-dy, 0, oh);
        var last = Math.Clamp(height - dy, first, oh);
        dst[..(first * width)].Fill(zeroPoint);
        dst[(last * width)..].Fill(zeroPoint);
        if (first == last) return;
        // Output (y, x) reads input element (y + dy)·width + x + dx; clip the run to the plane (what falls outside is
        // a wrapped column, filled below).
        int from = first * width, to = last * width;
        int src = (first + dy) * width + dx;
        if (src < 0) { from -= src; src = 0; }
        if (src + (to - from) > channel.Length) to = from + channel.Length - src;
        channel.Slice(src, to - from).CopyTo(dst[from..to]);
        if (dx == 0) return;
        // |dx| is a few columns: plain stores, not a Fill call per row.
        var (start, count) = dx > 0 ? (width - dx, dx) : (0, -dx);
        for (var y = first; y < last; y++)
            for (int x = y * width + start, end = x + count; x < end; x++) dst[x] = zeroPoint;
    }

    private static int Axis(int size, int kernel, int stride, int padding, int dilation, string axis)
    {
        var length = Layers.SlidingWindow.ConvOutput(size, kernel, stride, padding, padding, dilation);
        if (length < 1)
            throw new ArgumentException($"the input {axis} {size} padded by {padding} is smaller than the dilated kernel ({(long)dilation * (kernel - 1) + 1})");
        return (int)length;
    }
}
