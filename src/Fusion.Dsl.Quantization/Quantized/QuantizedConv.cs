using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.Conv1d</c>, <c>Conv2d</c> and <c>Conv3d</c> and, with ReLU fused,
/// <c>torch.ao.nn.intrinsic.quantized.ConvReLU1d</c>/<c>2d</c>/<c>3d</c>, as computed by the onednn engine: a quint8 input
/// [N, C_in, *spatial] of one to three spatial dimensions, a qint8 weight [C_out, C_in / groups, *kernel] (per tensor or
/// per output channel, zero points 0), a float32 bias, zero padding (which pads with the input's zero point, so padded
/// taps add nothing), stride, dilation and groups. The int32 sum of (x - x_zp)·w is requantized as oneDNN does (see
/// <see cref="OnednnRequantizer"/>).
/// <para>
/// Every rank runs on the 2-d int8 kernel (<see cref="Int8Convolution"/>), because the sums are exact integers and so
/// do not depend on how they are grouped: a 1-d convolution is a 2-d one of height 1; a 3-d one is, for each output
/// depth, a 2-d convolution whose input channels are the (channel, kernel depth) pairs of the input planes that output
/// reads (a plane outside the input is the zero point), whose weight [C_out, C_in / groups · kD, kH, kW] is the 3-d
/// weight's own memory.
/// </para>
/// </summary>
public sealed class QuantizedConv
{
    private readonly OnednnRequantizer _requantizer;
    private readonly Int8Convolution _kernel;

    /// <summary>The geometry along depth (1, 1, 0, 1 below rank 3): kernel, stride, padding, dilation.</summary>
    private readonly (int Kernel, int Stride, int Padding, int Dilation) _depth;

    /// <summary>Creates the module from its quantized weight, bias, geometry and output qparams; the rank is the
    /// weight's rank less 2.</summary>
    /// <param name="weight">A qint8 weight [C_out, C_in / groups, *kernel] of rank 3, 4 or 5, per tensor or per channel
    /// along axis 0, zero points 0.</param>
    /// <param name="bias">A float32 bias [C_out], or null.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point: 0..255.</param>
    /// <param name="stride">The stride along each spatial dimension, each at least 1.</param>
    /// <param name="padding">The zero padding along each spatial dimension, each at least 0.</param>
    /// <param name="dilation">The dilation along each spatial dimension, each at least 1.</param>
    /// <param name="groups">The number of groups, dividing C_out.</param>
    /// <param name="fuseRelu">Whether ReLU is fused (<c>ConvReLU1d</c>/<c>2d</c>/<c>3d</c>).</param>
    /// <exception cref="ArgumentException">A weight, bias, geometry or qparam that does not fit (the message names which).</exception>
    public QuantizedConv(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint,
        int[] stride, int[] padding, int[] dilation, int groups = 1, bool fuseRelu = false)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(stride);
        ArgumentNullException.ThrowIfNull(padding);
        ArgumentNullException.ThrowIfNull(dilation);
        if (weight.Rank is < 3 or > 5)
            throw new ArgumentException($"a quantized convolution takes a weight [C_out, C_in / groups, *kernel] with 1 to 3 kernel dimensions, got rank {weight.Rank}", nameof(weight));
        Rank = weight.Rank - 2;
        Name = $"quantized Conv{(fuseRelu ? "ReLU" : "")}{Rank}d";
        QuantizedChecks.ConvGeometry(Name, Rank, weight, stride, padding, dilation, groups);
        if (weight.Size(0) % groups != 0)
            throw new ArgumentException($"{Name}: groups ({groups}) must divide the {weight.Size(0)} output channels", nameof(groups));
        _requantizer = new OnednnRequantizer(Name, weight, bias, scale, zeroPoint, fuseRelu);
        // Below rank 3 the missing leading spatial dimensions have size 1: kernel 1, stride 1, no padding, dilation 1.
        int[] k = QuantizedChecks.Pad3([.. weight.Dimensions.Skip(2)], 1), s = QuantizedChecks.Pad3(stride, 1),
            p = QuantizedChecks.Pad3(padding, 0), d = QuantizedChecks.Pad3(dilation, 1);
        _depth = (k[0], s[0], p[0], d[0]);
        _kernel = new Int8Convolution(MemoryMarshal.Cast<byte, sbyte>(weight.RawData), weight.Size(0), checked(weight.Size(1) * k[0]),
            (k[1], k[2]), (s[1], s[2]), (p[1], p[2]), (d[1], d[2]), groups);
        Weight = weight;
        Bias = bias;
        Stride = [.. stride];
        Padding = [.. padding];
        Dilation = [.. dilation];
        Groups = groups;
    }

    /// <summary>A module with the same stride, padding and dilation along every spatial dimension.</summary>
    /// <exception cref="ArgumentException">As the other constructor.</exception>
    public QuantizedConv(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint, int stride = 1, int padding = 0, int dilation = 1, int groups = 1, bool fuseRelu = false)
        : this(weight, bias, scale, zeroPoint, Same(weight, stride), Same(weight, padding), Same(weight, dilation), groups, fuseRelu) { }

    private static int[] Same(QuantizedTensor weight, int value)
    {
        ArgumentNullException.ThrowIfNull(weight);
        return Enumerable.Repeat(value, Math.Max(weight.Rank - 2, 0)).ToArray();
    }

    /// <summary>The number of spatial dimensions: 1, 2 or 3.</summary>
    public int Rank { get; }

    /// <summary>PyTorch's class name of the quantized module as <see cref="QuantizedLayer.TypeName"/> gives it:
    /// <c>QuantizedConv1d</c>, <c>QuantizedConvReLU2d</c>, ...</summary>
    public string TypeName => $"QuantizedConv{(FusedReLU ? "ReLU" : "")}{Rank}d";

    /// <summary>Every <see cref="TypeName"/> a quantized convolution has, for tables keyed by layer type.</summary>
    internal static ImmutableArray<string> TypeNames { get; } =
        [.. from rank in new[] { 1, 2, 3 } from relu in new[] { "", "ReLU" } select $"QuantizedConv{relu}{rank}d"];

    /// <summary>The name in error messages.</summary>
    private string Name { get; }

    /// <summary>The quantized weight [C_out, C_in / groups, *kernel].</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>The float32 bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The stride along each spatial dimension.</summary>
    public ImmutableArray<int> Stride { get; }

    /// <summary>The zero padding along each spatial dimension.</summary>
    public ImmutableArray<int> Padding { get; }

    /// <summary>The dilation along each spatial dimension.</summary>
    public ImmutableArray<int> Dilation { get; }

    /// <summary>The number of groups.</summary>
    public int Groups { get; }

    /// <summary>The output scale.</summary>
    public double Scale => _requantizer.Scale;

    /// <summary>The output zero point.</summary>
    public long ZeroPoint => _requantizer.ZeroPoint;

    /// <summary>Whether ReLU is fused.</summary>
    public bool FusedReLU => _requantizer.Relu;

    /// <summary>The module's forward pass.</summary>
    /// <param name="input">A per-tensor quint8 tensor [N, C_in, *spatial] with C_in = groups · the weight's second dimension.</param>
    /// <returns>A per-tensor quint8 tensor [N, C_out, *spatial_out] with the module's scale and zero point.</returns>
    /// <exception cref="ArgumentException">The input is not per-tensor quint8 of rank <see cref="Rank"/> + 2, has the wrong
    /// channel count, or is smaller than the dilated kernel.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, 1);

    /// <summary>The module's forward pass on up to <paramref name="threads"/> cores (the same bits on any number).</summary>
    /// <param name="input">As <see cref="Forward(QuantizedTensor)"/>.</param>
    /// <param name="threads">The cores to use, at least 1.</param>
    /// <exception cref="ArgumentException">As <see cref="Forward(QuantizedTensor)"/>.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, int threads)
    {
        var (n, size, od, oh, ow, shape) = Plan(input);
        var requantization = _requantizer.For(input.Scale);
        // An empty batch or image has nothing to sum (the kernel takes at least one pixel): only the bias is left.
        if (input.Count == 0) return QuantizedTensor.Adopt(Empty(shape, requantization), shape, Scale, ZeroPoint, QuantizedDType.QUInt8);
        var zp = (int)input.ZeroPoint;
        byte[] data;
        if (ReadsInputDirectly(size))
            data = _kernel.Requantize(input.RawData, n, size[1], size[2], zp, requantization, threads);
        else
        {
            var planes = DepthTaps(input.RawData, n, Weight.Size(1) * Groups, size, od, (byte)zp);
            data = FromDepthMajor(_kernel.Requantize(planes, n * od, size[1], size[2], zp, requantization, threads), n, Weight.Size(0), od, oh * ow);
        }
        return QuantizedTensor.Adopt(data, shape, Scale, ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>
    /// <c>f.add(conv(input), residual)</c> (or <c>add_relu</c>) in one pass: the convolution's outputs go through the
    /// quantized add as they leave the kernel, with the bits of the two run one after the other (the add's float32 sum
    /// of the two scaled terms does not depend on their order). Null when the pair does not fit that form (a residual
    /// that is not a per-tensor quint8 tensor of the output's shape, an empty input, or a 3-d convolution with a depth
    /// kernel, whose output the 2-d kernel writes in another order): the caller then runs the two apart, which refuses
    /// what is wrong. An input the convolution refuses is refused here, with <see cref="Forward(QuantizedTensor, int)"/>'s message.
    /// </summary>
    internal QuantizedTensor? ForwardAdd(QuantizedTensor input, QuantizedTensor residual, QFunctional add, bool relu, int threads)
    {
        var (n, size, _, _, _, shape) = Plan(input);
        if (input.Count == 0 || !ReadsInputDirectly(size)
            || residual.DType != QuantizedDType.QUInt8 || residual.Axis is not null || !residual.RawShape.AsSpan().SequenceEqual(shape)
            || add.ZeroPoint is < 0 or > 255)
            return null;
        var fused = new Engine.Int8Add(Scale, (int)ZeroPoint, residual.Scale, (int)residual.ZeroPoint, add.Scale, add.ZeroPoint, relu, signed: false);
        var data = _kernel.Requantize(input.RawData, n, size[1], size[2], (int)input.ZeroPoint, _requantizer.For(input.Scale), residual.RawData, fused, threads);
        return QuantizedTensor.Adopt(data, shape, add.Scale, add.ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>One call's sizes, the input checked: the batch, the input as [D, H, W] (D and H being 1 where the
    /// convolution has fewer dimensions), the output's depth, height and width, and its shape [N, C_out, *spatial_out].</summary>
    private (int Batch, int[] Size, int DepthOut, int HeightOut, int WidthOut, int[] Shape) Plan(QuantizedTensor input)
    {
        int cout = Weight.Size(0);
        var (n, size) = QuantizedChecks.ConvInput(input, Name, Rank, Weight.Size(1) * Groups);
        int od = DepthOutput(size[0]);
        var (oh, ow) = OutputSize(size[1], size[2]);
        int[] spatialOut = [od, oh, ow];
        int[] shape = [n, cout, .. spatialOut[(3 - Rank)..]];
        QuantizedChecks.OutputCount(shape, Name);
        return (n, size, od, oh, ow, shape);
    }

    /// <summary>Whether the 2-d kernel reads the input itself (no depth, or a depth kernel of 1 without padding) rather
    /// than the depth taps <see cref="DepthTaps"/> lays out.</summary>
    private bool ReadsInputDirectly(int[] size) => size[0] == 1 && _depth.Kernel == 1 && _depth.Padding == 0;

    /// <summary>The 2-d kernel's input for a 3-d convolution: [N · D_out, C_in · kD, H, W], image (n, od) channel
    /// (c, kd) holding input plane (n, c, od·stride − padding + kd·dilation), or the zero point where that lies outside.</summary>
    private byte[] DepthTaps(byte[] input, int n, int cin, int[] size, int od, byte zeroPoint)
    {
        int plane = size[1] * size[2], kd = _depth.Kernel;
        var taps = GC.AllocateUninitializedArray<byte>(checked(n * od * cin * kd * plane));
        for (int b = 0; b < n; b++)
            for (int o = 0; o < od; o++)
                for (int c = 0; c < cin; c++)
                    for (int k = 0; k < kd; k++)
                    {
                        var dst = taps.AsSpan((((b * od + o) * cin + c) * kd + k) * plane, plane);
                        int z = o * _depth.Stride - _depth.Padding + k * _depth.Dilation;
                        if (z < 0 || z >= size[0]) dst.Fill(zeroPoint);
                        else input.AsSpan(((b * cin + c) * size[0] + z) * plane, plane).CopyTo(dst);
                    }
        return taps;
    }

    /// <summary>The kernel's [N · D_out, C_out, plane] output as [N, C_out, D_out, plane].</summary>
    private static byte[] FromDepthMajor(byte[] y, int n, int cout, int od, int plane)
    {
        var output = GC.AllocateUninitializedArray<byte>(y.Length);
        for (int b = 0; b < n; b++)
            for (int o = 0; o < od; o++)
                for (int c = 0; c < cout; c++)
                    y.AsSpan(((b * od + o) * cout + c) * plane, plane).CopyTo(output.AsSpan(((b * cout + c) * od + o) * plane, plane));
        return output;
    }

    /// <summary>The output of an input without elements: every output's sum is 0, so each channel holds its requantized bias.</summary>
    private static byte[] Empty(int[] shape, Int8Requantization requantization)
    {
        var data = new byte[shape.Aggregate(1L, (a, b) => a * b)];
        var plane = shape.Skip(2).Aggregate(1, (a, b) => a * b);
        for (int i = 0; i < data.Length; i++) data[i] = requantization.Apply(0, i / plane % shape[1]);
        return data;
    }

    private int DepthOutput(int depth)
    {
        var length = SlidingWindow.ConvOutput(depth, _depth.Kernel, _depth.Stride, _depth.Padding, _depth.Padding, _depth.Dilation);
        if (length < 1)
            throw new ArgumentException($"{Name}: the input depth {depth} padded by {_depth.Padding} is smaller than the dilated kernel ({(long)_depth.Dilation * (_depth.Kernel - 1) + 1})");
        return (int)length;
    }

    private (int Height, int Width) OutputSize(int height, int width)
    {
        try { return _kernel.OutputSize(height, width); }
        catch (ArgumentException e) { throw new ArgumentException($"{Name}: {(Rank == 1 ? e.Message.Replace("width", "length", StringComparison.Ordinal) : e.Message)}", e); }
    }
}
