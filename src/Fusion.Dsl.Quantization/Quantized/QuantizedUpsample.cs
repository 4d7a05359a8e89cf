using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// <c>F.interpolate</c>, <c>nn.Upsample</c>, <c>nn.UpsamplingNearest2d</c> and <c>nn.UpsamplingBilinear2d</c> on a
/// quantized tensor [N, C, H, W], as PyTorch 1.13's quantized <c>upsample_nearest2d</c> and <c>upsample_bilinear2d</c>
/// compute them: the output keeps the input's scale, zero point and dtype. PyTorch has an NCHW and an NHWC kernel,
/// chosen by whether the input is channels-last contiguous (a convolution's output is; so is any input with one channel
/// or a 1×1 plane), and they round differently:
/// <list type="bullet">
/// <item>nearest (both kernels): each output copies input (min(floor(o·s), in − 1)) along each dimension, s the float32
/// scale (1 / scale_factor, or in / out); the whole input when neither dimension changes size.</item>
/// <item>bilinear, NCHW kernel: the whole input when neither dimension changes size; else with the source position
/// src = max(s·(o + 0.5) − 0.5, 0) (align_corners: s·o, s = (in − 1) / (out − 1)) in float32, its integer part i and
/// fraction λ, r = λ0·(μ0·x00 + μ1·x01) + λ1·(μ0·x10 + μ1·x11) − zp in float32, y = zp + nearbyint(r).</item>
/// <item>bilinear, NHWC kernel: src in float64 narrowed to float32, and the sums as fused multiply-adds, even when no
/// dimension changes size: in its vector loop (the channels in whole blocks of 8)
/// r = fma(λ1, fma(μ1, x11, μ0·x10), λ0·fma(μ1, x01, μ0·x00)) − zp, in its scalar loop (the other channels)
/// r = fma(λ0, fma(μ0, x00, μ1·x01), λ1·fma(μ0, x10, μ1·x11)) − zp; y = zp + nearbyint(r).</item>
/// </list>
/// A contiguous (not channels-last) input with a 1×1 plane and more than one channel is channels-last contiguous too:
/// PyTorch 1.13 runs the NHWC kernel on it but allocates a contiguous output, so the output holds the NHWC-ordered
/// values read as NCHW. This reproduces that, so that the integers equal PyTorch's.
/// </summary>
public sealed class QuantizedUpsample
{
    /// <summary>How many channels the NHWC bilinear kernel's vector loop takes at a time (AVX2's 8 float32 lanes).</summary>
    private const int NhwcLanes = 8;

    /// <summary>Creates the module.</summary>
    /// <param name="interpolation">The interpolation (<see cref="Interpolation.FromArguments"/>).</param>
    public QuantizedUpsample(Interpolation interpolation)
    {
        ArgumentNullException.ThrowIfNull(interpolation);
        Interpolation = interpolation;
    }

    /// <summary>The interpolation: mode, size or scale factors, align_corners, recompute_scale_factor.</summary>
    public Interpolation Interpolation { get; }

    private string Name => $"quantized upsample_{Interpolation.Mode}2d";

    /// <summary>The forward pass on a contiguous input.</summary>
    /// <exception cref="ArgumentException">As <see cref="Forward(QuantizedTensor, bool)"/>.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, channelsLast: false);

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor [N, C, H, W].</param>
    /// <param name="channelsLast">Whether PyTorch would hold the input channels-last (a quantized convolution's output);
    /// it picks PyTorch's kernel, and the output is channels-last when the input is.</param>
    /// <returns>A tensor [N, C, H_out, W_out] with the input's qparams and dtype.</returns>
    /// <exception cref="ArgumentException">The input is per channel or not 4-d, or an input or output dimension is 0.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, bool channelsLast)
    {
        QuantizedChecks.PerTensorInput(input, input?.DType ?? QuantizedDType.QUInt8, Name);
        if (input!.Rank != 4)
            throw new ArgumentException($"{Name} takes a 4-d input [N, C, H, W], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int n = input.Size(0), c = input.Size(1), h = input.Size(2), w = input.Size(3);
        var (oh, ow, sh, sw) = Interpolation.Output(h, w);
        int[] shape = [n, c, oh, ow];
        QuantizedChecks.OutputCount(shape, Name);
        var x = input.IntRepr();
        int zp = (int)input.ZeroPoint;
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        bool nhwc = channelsLast || Interpolation.TakesNhwcKernels(c, h, w);
        var y = new int[n * c * oh * ow];
        if (oh == h && ow == w && (!Interpolation.Bilinear || !nhwc))
            Array.Copy(x, y, x.Length);
        else if (!Interpolation.Bilinear)
        {
            int[] rows = NearestIndex(h, oh, sh), cols = NearestIndex(w, ow, sw);
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                        y[(p * oh + i) * ow + j] = x[(p * h + rows[i]) * w + cols[j]];
        }
        else
        {
            // The NHWC kernel's AVX2 loop takes the channels 8 at a time; the rest go through its scalar loop, which
            // the compiler contracts into other fused multiply-adds (measured on this machine's PyTorch 1.13).
            int vectorChannels = c / NhwcLanes * NhwcLanes;
            var rows = Taps(h, oh, sh, nhwc);
            var cols = Taps(w, ow, sw, nhwc);
            for (int p = 0; p < n * c; p++)
                for (int i = 0; i < oh; i++)
                {
                    var (r0, r1, l0, l1) = rows[i];
                    for (int j = 0; j < ow; j++)
                    {
                        var (c0, c1, m0, m1) = cols[j];
                        int b = p * h * w;
                        float a = x[b + r0 * w + c0], bb = x[b + r0 * w + c1], cc = x[b + r1 * w + c0], d = x[b + r1 * w + c1];
                        float r = !nhwc ? l0 * (m0 * a + m1 * bb) + l1 * (m0 * cc + m1 * d)
                            : p % c < vectorChannels
                                ? MathF.FusedMultiplyAdd(l1, MathF.FusedMultiplyAdd(m1, d, m0 * cc), l0 * MathF.FusedMultiplyAdd(m1, bb, m0 * a))
                                : MathF.FusedMultiplyAdd(l0, MathF.FusedMultiplyAdd(m0, a, m1 * bb), l1 * MathF.FusedMultiplyAdd(m0, cc, m1 * d));
                        r -= zp;
                        y[(p * oh + i) * ow + j] = (int)Math.Clamp(zp + (long)MathF.Round(r, MidpointRounding.ToEven), qmin, qmax);
                    }
                }
        }
        if (!channelsLast && nhwc && c > 1 && oh * ow > 1) y = NhwcIntoContiguous.Apply(y, n, c, oh * ow);
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }

    /// <summary>PyTorch's <c>nearest_neighbor_compute_source_index</c> along one dimension: min(floor(o·s), in − 1), o·s in float32.</summary>
    private int[] NearestIndex(int input, int output, double? scale)
    {
        float s = Interpolation.KernelScale(input, output, scale);
        var index = new int[output];
        for (int o = 0; o < output; o++) index[o] = Math.Min((int)MathF.Floor(o * s), input - 1);
        return index;
    }

    /// <summary>The two source indices and their weights along one dimension, the source position in float32 (NCHW
    /// kernel) or in float64 narrowed to float32 (NHWC kernel).</summary>
    private (int I0, int I1, float L0, float L1)[] Taps(int input, int output, double? scale, bool nhwc)
    {
        float s = Interpolation.KernelScale(input, output, scale);
        var taps = new (int, int, float, float)[output];
        for (int o = 0; o < output; o++)
        {
            float src = Interpolation.AlignCorners ? s * o
                : nhwc ? (float)(s * (o + 0.5) - 0.5)
                : s * (o + 0.5f) - 0.5f;
            if (src < 0) src = 0;
            int i0 = (int)src;
            float l1 = src - i0;
            taps[o] = (i0, i0 + (i0 < input - 1 ? 1 : 0), 1f - l1, l1);
        }
        return taps;
    }
}
