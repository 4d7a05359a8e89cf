using System.Collections.Immutable;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.ConvTranspose1d</c>, <c>ConvTranspose2d</c> and <c>ConvTranspose3d</c> as the
/// onednn engine computes them: a quint8 input [N, C_in, *spatial] of one to three spatial dimensions, a qint8 weight
/// [C_in, C_out / groups, *kernel] quantized per tensor with zero point 0 (PyTorch 1.13 refuses per-channel weights for
/// transposed convolutions), a float32 bias [C_out], stride, padding, dilation and groups; output_padding 0, the only
/// value onednn takes. Each output is the exact int32 sum of (x − x_zp)·w over the input positions and taps that reach
/// it (input position i reaches output i·stride − padding + k·dilation), requantized as oneDNN requantizes a convolution
/// (see <see cref="OnednnRequantizer"/>; the same float32 steps matched PyTorch's deconvolutions on every output of the
/// fixtures).
/// </summary>
public sealed class QuantizedConvTranspose
{
    private readonly OnednnRequantizer _requantizer;
    private readonly sbyte[] _weight;

    /// <summary>The geometry padded to three spatial dimensions (the missing leading ones: kernel 1, stride 1, padding 0,
    /// dilation 1).</summary>
    private readonly int[] _kernel, _stride, _padding, _dilation;

    /// <summary>Creates the module from its quantized weight, bias, geometry and output qparams; the rank is the
    /// weight's rank less 2.</summary>
    /// <param name="weight">A qint8 weight [C_in, C_out / groups, *kernel] of rank 3, 4 or 5, per tensor, zero point 0.</param>
    /// <param name="bias">A float32 bias [C_out], or null.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point: 0..255.</param>
    /// <param name="stride">The stride along each spatial dimension, each at least 1.</param>
    /// <param name="padding">The padding along each spatial dimension, each at least 0 (it removes that many outputs
    /// from each end).</param>
    /// <param name="outputPadding">The output padding along each spatial dimension: onednn takes only 0.</param>
    /// <param name="dilation">The dilation along each spatial dimension, each at least 1.</param>
    /// <param name="groups">The number of groups, dividing C_in.</param>
    /// <exception cref="ArgumentException">A weight, bias, geometry or qparam that does not fit (the message names which;
    /// a per-channel weight and a nonzero output_padding with PyTorch's reasons).</exception>
    public QuantizedConvTranspose(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint,
        int[] stride, int[] padding, int[] outputPadding, int[] dilation, int groups = 1)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(stride);
        ArgumentNullException.ThrowIfNull(padding);
        ArgumentNullException.ThrowIfNull(outputPadding);
        ArgumentNullException.ThrowIfNull(dilation);
        if (weight.Rank is < 3 or > 5)
            throw new ArgumentException($"a quantized transposed convolution takes a weight [C_in, C_out / groups, *kernel] with 1 to 3 kernel dimensions, got rank {weight.Rank}", nameof(weight));
        Rank = weight.Rank - 2;
        Name = $"quantized ConvTranspose{Rank}d";
        QuantizedChecks.ConvGeometry(Name, Rank, weight, stride, padding, dilation, groups, (outputPadding, "output_padding"));
        if (outputPadding.Any(p => p != 0))
            throw new ArgumentException($"{Name}: output_padding {Tensor.ShapeString(outputPadding)} is not 0; PyTorch's onednn engine takes only zero output_padding (quantized::conv_prepack: \"ONEDNN only supports zero output_padding\")", "output_padding");
        if (weight.IsPerChannel)
            throw new ArgumentException($"{Name}: the weight is quantized per channel; PyTorch 1.13 takes a per-tensor weight only (\"Per Channel Quantization is currently disabled for transposed conv\"): use a per-tensor weight observer such as MinMaxObserver", nameof(weight));
        if (weight.Size(0) % groups != 0)
            throw new ArgumentException($"{Name}: groups ({groups}) must divide the {weight.Size(0)} input channels", nameof(groups));
        OutChannels = checked(weight.Size(1) * groups);
        _requantizer = new OnednnRequantizer(Name, weight, bias, scale, zeroPoint, relu: false, OutChannels);
        (_kernel, _stride, _padding, _dilation) = (QuantizedChecks.Pad3([.. weight.Dimensions.Skip(2)], 1), QuantizedChecks.Pad3(stride, 1),
            QuantizedChecks.Pad3(padding, 0), QuantizedChecks.Pad3(dilation, 1));
        _weight = [.. weight.IntRepr().Select(v => (sbyte)v)];
        Weight = weight;
        Bias = bias;
        Stride = [.. stride];
        Padding = [.. padding];
        Dilation = [.. dilation];
        Groups = groups;
    }

    /// <summary>The number of spatial dimensions: 1, 2 or 3.</summary>
    public int Rank { get; }

    /// <summary>PyTorch's class name of the quantized module as <see cref="QuantizedLayer.TypeName"/> gives it:
    /// <c>QuantizedConvTranspose1d</c>, <c>2d</c> or <c>3d</c>.</summary>
    public string TypeName => $"QuantizedConvTranspose{Rank}d";

    /// <summary>Every <see cref="TypeName"/> a quantized transposed convolution has, for tables keyed by layer type.</summary>
    internal static ImmutableArray<string> TypeNames { get; } = ["QuantizedConvTranspose1d", "QuantizedConvTranspose2d", "QuantizedConvTranspose3d"];

    /// <summary>The name in error messages.</summary>
    private string Name { get; }

    /// <summary>The quantized weight [C_in, C_out / groups, *kernel].</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>The float32 bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The number of output channels: groups times the weight's second dimension.</summary>
    public int OutChannels { get; }

    /// <summary>The stride along each spatial dimension.</summary>
    public ImmutableArray<int> Stride { get; }

    /// <summary>The padding along each spatial dimension.</summary>
    public ImmutableArray<int> Padding { get; }

    /// <summary>The dilation along each spatial dimension.</summary>
    public ImmutableArray<int> Dilation { get; }

    /// <summary>The number of groups.</summary>
    public int Groups { get; }

    /// <summary>The output scale.</summary>
    public double Scale => _requantizer.Scale;

    /// <summary>The output zero point.</summary>
    public long ZeroPoint => _requantizer.ZeroPoint;

    /// <summary>The module's forward pass.</summary>
    /// <param name="input">A per-tensor quint8 tensor [N, C_in, *spatial].</param>
    /// <returns>A per-tensor quint8 tensor [N, C_out, *spatial_out] with the module's scale and zero point, each
    /// spatial_out being (in − 1)·stride − 2·padding + dilation·(kernel − 1) + 1.</returns>
    /// <exception cref="ArgumentException">The input is not per-tensor quint8 of rank <see cref="Rank"/> + 2, has the
    /// wrong channel count, or gives an output dimension below 1.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, 1);

    /// <summary>The module's forward pass on up to <paramref name="threads"/> cores (the same bits on any number).</summary>
    /// <param name="input">As <see cref="Forward(QuantizedTensor)"/>.</param>
    /// <param name="threads">The cores to use, at least 1.</param>
    /// <exception cref="ArgumentException">As <see cref="Forward(QuantizedTensor)"/>.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        int cin = Weight.Size(0);
        var (n, size) = QuantizedChecks.ConvInput(input, Name, Rank, cin);
        var outSize = new int[3];
        for (int d = 0; d < 3; d++)
        {
            long o = SlidingWindow.ConvTransposeOutput(size[d], _kernel[d], _stride[d], _padding[d], _padding[d], _dilation[d], 0);
            if (o < 1)
                throw new ArgumentException($"{Name}: the output {QuantizedChecks.SpatialNames[d].ToLowerInvariant()} would be {o} (input {size[d]}, kernel {_kernel[d]}, stride {_stride[d]}, padding {_padding[d]}, dilation {_dilation[d]}); PyTorch refuses it too (\"Output dimension is zero\"): give a larger input or less padding", nameof(input));
            outSize[d] = checked((int)o);
        }
        int[] shape = [n, OutChannels, .. outSize[(3 - Rank)..]];
        QuantizedChecks.OutputCount(shape, Name);
        var requantization = _requantizer.For(input.Scale);
        var output = GC.AllocateUninitializedArray<byte>(shape.Aggregate(1, (a, b) => a * b));
        int outPlane = outSize[0] * outSize[1] * outSize[2], inPlane = size[0] * size[1] * size[2];
        var x = input.RawData;
        int zp = (int)input.ZeroPoint;
        Parallel.For(0, n * OutChannels, new ParallelOptions { MaxDegreeOfParallelism = threads }, job =>
        {
            int b = job / OutChannels, co = job % OutChannels;
            var acc = new int[outPlane];
            Accumulate(acc, x.AsSpan(b * cin * inPlane, cin * inPlane), co, size, outSize, zp);
            var dst = output.AsSpan(job * outPlane, outPlane);
            for (int i = 0; i < outPlane; i++) dst[i] = requantization.Apply(acc[i], co);
        });
        return QuantizedTensor.Adopt(output, shape, Scale, ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>Adds to <paramref name="acc"/> (output channel <paramref name="co"/> of one image) every
    /// (x − zero point)·w of its group's input channels: input position (z, y, x) through tap (kd, kh, kw) reaches
    /// output (z·s − p + kd·d, ...) along each dimension, when that lies inside the output.</summary>
    private void Accumulate(int[] acc, ReadOnlySpan<byte> image, int co, int[] size, int[] outSize, int zp)
    {
        int coutPerGroup = OutChannels / Groups, cinPerGroup = Weight.Size(0) / Groups;
        int g = co / coutPerGroup, local = co % coutPerGroup;
        int taps = _kernel[0] * _kernel[1] * _kernel[2], inPlane = size[0] * size[1] * size[2];
        for (int ci = g * cinPerGroup; ci < (g + 1) * cinPerGroup; ci++)
        {
            var plane = image.Slice(ci * inPlane, inPlane);
            int wBase = (ci * coutPerGroup + local) * taps;
            for (int kd = 0; kd < _kernel[0]; kd++)
                for (int kh = 0; kh < _kernel[1]; kh++)
                    for (int kw = 0; kw < _kernel[2]; kw++)
                    {
                        int w = _weight[wBase + (kd * _kernel[1] + kh) * _kernel[2] + kw];
                        if (w == 0) continue;
                        for (int iz = 0; iz < size[0]; iz++)
                        {
                            int oz = iz * _stride[0] - _padding[0] + kd * _dilation[0];
                            if (oz < 0 || oz >= outSize[0]) continue;
                            for (int iy = 0; iy < size[1]; iy++)
                            {
                                int oy = iy * _stride[1] - _padding[1] + kh * _dilation[1];
                                if (oy < 0 || oy >= outSize[1]) continue;
                                var row = plane.Slice((iz * size[1] + iy) * size[2], size[2]);
                                int outRow = (oz * outSize[1] + oy) * outSize[2];
                                for (int ix = 0; ix < size[2]; ix++)
                                {
                                    int ox = ix * _stride[2] - _padding[2] + kw * _dilation[2];
                                    if ((uint)ox < (uint)outSize[2]) acc[outRow + ox] += (row[ix] - zp) * w;
                                }
                            }
                        }
                    }
        }
    }
}
