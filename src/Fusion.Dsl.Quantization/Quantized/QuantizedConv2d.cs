using System.Runtime.InteropServices;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.Conv2d</c> and, with ReLU fused, <c>torch.ao.nn.intrinsic.quantized.ConvReLU2d</c>,
/// as computed by the onednn engine: a quint8 input [N, C_in, H, W], a qint8 weight [C_out, C_in / groups, kH, kW]
/// (per tensor or per output channel, zero points 0), a float32 bias, zero padding (which pads with the input's zero
/// point, so padded taps add nothing), stride, dilation and groups (depthwise when groups = C_in = C_out). The int32 sum
/// of (x - x_zp)·w is requantized as oneDNN does (see <see cref="OnednnRequantizer"/>).
/// </summary>
public sealed class QuantizedConv2d
{
    private const string Name = "quantized Conv2d";
    private readonly OnednnRequantizer _requantizer;
    private readonly Int8Convolution _kernel;

    /// <summary>Creates the module from its quantized weight, bias, geometry and output qparams.</summary>
    /// <param name="weight">A qint8 weight [C_out, C_in / groups, kH, kW], per tensor or per channel along axis 0, zero points 0.</param>
    /// <param name="bias">A float32 bias [C_out], or null.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point: 0..255.</param>
    /// <param name="stride">The stride (height, width), each at least 1.</param>
    /// <param name="padding">The zero padding (height, width), each at least 0.</param>
    /// <param name="dilation">The dilation (height, width), each at least 1.</param>
    /// <param name="groups">The number of groups, dividing C_out.</param>
    /// <param name="fuseRelu">Whether ReLU is fused (<c>ConvReLU2d</c>).</param>
    /// <exception cref="ArgumentException">A weight, bias, geometry or qparam that does not fit (the message names which).</exception>
    public QuantizedConv2d(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint,
        (int Height, int Width) stride, (int Height, int Width) padding, (int Height, int Width) dilation, int groups = 1, bool fuseRelu = false)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 4)
            throw new ArgumentException($"{Name} takes a weight of shape [C_out, C_in / groups, kH, kW], got rank {weight.Rank}", nameof(weight));
        Limits.RequireArguments(Name, "weight dimension", weight.Dimensions, 1);
        Limits.RequireArguments(Name, "stride", new[] { stride.Height, stride.Width }, 1);
        Limits.RequireArguments(Name, "padding", new[] { padding.Height, padding.Width }, 0);
        Limits.RequireArguments(Name, "dilation", new[] { dilation.Height, dilation.Width }, 1);
        Limits.RequireArgument(Name, "groups", groups, 1);
        if (weight.Size(0) % groups != 0)
            throw new ArgumentException($"{Name}: groups ({groups}) must divide the {weight.Size(0)} output channels", nameof(groups));
        _requantizer = new OnednnRequantizer(Name, weight, bias, scale, zeroPoint, fuseRelu);
        _kernel = new Int8Convolution(MemoryMarshal.Cast<byte, sbyte>(weight.RawData), weight.Size(0), weight.Size(1),
            (weight.Size(2), weight.Size(3)), stride, padding, dilation, groups);
        Weight = weight;
        Bias = bias;
        Stride = stride;
        Padding = padding;
        Dilation = dilation;
        Groups = groups;
    }

    /// <summary>A module with the same stride, padding and dilation along both axes.</summary>
    /// <exception cref="ArgumentException">As the other constructor.</exception>
    public QuantizedConv2d(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint, int stride = 1, int padding = 0, int dilation = 1, int groups = 1, bool fuseRelu = false)
        : this(weight, bias, scale, zeroPoint, (stride, stride), (padding, padding), (dilation, dilation), groups, fuseRelu) { }

    /// <summary>The quantized weight [C_out, C_in / groups, kH, kW].</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>The float32 bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The stride (height, width).</summary>
    public (int Height, int Width) Stride { get; }

    /// <summary>The zero padding (height, width).</summary>
    public (int Height, int Width) Padding { get; }

    /// <summary>The dilation (height, width).</summary>
    public (int Height, int Width) Dilation { get; }

    /// <summary>The number of groups.</summary>
    public int Groups { get; }

    /// <summary>The output scale.</summary>
    public double Scale => _requantizer.Scale;

    /// <summary>The output zero point.</summary>
    public long ZeroPoint => _requantizer.ZeroPoint;

    /// <summary>Whether ReLU is fused.</summary>
    public bool FusedReLU => _requantizer.Relu;

    /// <summary>The module's forward pass.</summary>
    /// <param name="input">A per-tensor quint8 tensor [N, C_in, H, W] with C_in = groups · the weight's second dimension.</param>
    /// <returns>A per-tensor quint8 tensor [N, C_out, H_out, W_out] with the module's scale and zero point.</returns>
    /// <exception cref="ArgumentException">The input is not per-tensor quint8 of rank 4, has the wrong channel count, or is smaller than the dilated kernel.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, 1);

    /// <summary>The module's forward pass on up to <paramref name="threads"/> cores (the same bits on any number).</summary>
    /// <param name="input">As <see cref="Forward(QuantizedTensor)"/>.</param>
    /// <param name="threads">The cores to use, at least 1.</param>
    /// <exception cref="ArgumentException">As <see cref="Forward(QuantizedTensor)"/>.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, int threads)
    {
        QuantizedChecks.PerTensorInput(input, QuantizedDType.QUInt8, Name);
        int cout = Weight.Size(0), cinG = Weight.Size(1);
        if (input.Rank != 4 || input.Size(1) != cinG * Groups)
            throw new ArgumentException($"{Name} expects input of shape [N, {cinG * Groups}, H, W], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int n = input.Size(0), h = input.Size(2), w = input.Size(3);
        var (oh, ow) = OutputSize(h, w);
        var shape = new[] { n, cout, oh, ow };
        QuantizedChecks.OutputCount(shape, Name);
        // An empty batch or image has nothing to sum (the kernel takes at least one pixel): only the bias is left.
        var requantization = _requantizer.For(input.Scale);
        var data = input.Count == 0 ? Empty(shape, requantization) : _kernel.Requantize(input.RawData, n, h, w, (int)input.ZeroPoint, requantization, threads);
        return QuantizedTensor.Adopt(data, shape, Scale, ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>
    /// <c>f.add(conv(input), residual)</c> (or <c>add_relu</c>) in one pass: the convolution's outputs go through the
    /// quantized add as each row leaves the kernel, with the bits of the two run one after the other (the add's float32
    /// sum of the two scaled terms does not depend on their order). Null when the pair does not fit that form (a
    /// residual that is not a per-tensor quint8 tensor of the output's shape, or an empty input): the caller then runs
    /// the two apart, which refuses what is wrong.
    /// </summary>
    internal QuantizedTensor? ForwardAdd(QuantizedTensor input, QuantizedTensor residual, QFunctional add, bool relu, int threads)
    {
        QuantizedChecks.PerTensorInput(input, QuantizedDType.QUInt8, Name);
        int cout = Weight.Size(0), cinG = Weight.Size(1);
        if (input.Rank != 4 || input.Size(1) != cinG * Groups || input.Count == 0) return null;
        int n = input.Size(0), h = input.Size(2), w = input.Size(3);
        var (oh, ow) = OutputSize(h, w);
        var shape = new[] { n, cout, oh, ow };
        if (residual.DType != QuantizedDType.QUInt8 || residual.Axis is not null || !residual.RawShape.AsSpan().SequenceEqual(shape)
            || add.ZeroPoint is < 0 or > 255)
            return null;
        var fused = new Engine.Int8Add(Scale, (int)ZeroPoint, residual.Scale, (int)residual.ZeroPoint, add.Scale, add.ZeroPoint, relu, signed: false);
        var data = _kernel.Requantize(input.RawData, n, h, w, (int)input.ZeroPoint, _requantizer.For(input.Scale), residual.RawData, fused, threads);
        return QuantizedTensor.Adopt(data, shape, add.Scale, add.ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>The output of an input without elements: every output's sum is 0, so each channel holds its requantized bias.</summary>
    private static byte[] Empty(int[] shape, Int8Requantization requantization)
    {
        var data = new byte[shape[0] * shape[1] * shape[2] * shape[3]];
        var plane = shape[2] * shape[3];
        for (int i = 0; i < data.Length; i++) data[i] = requantization.Apply(0, i / plane % shape[1]);
        return data;
    }

    private (int Height, int Width) OutputSize(int height, int width)
    {
        try { return _kernel.OutputSize(height, width); }
        catch (ArgumentException e) { throw new ArgumentException($"{Name}: {e.Message}", e); }
    }
}
