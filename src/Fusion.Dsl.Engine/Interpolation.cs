using System.Globalization;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// PyTorch 1.13's <c>F.interpolate</c> (and <c>nn.Upsample</c>, <c>nn.UpsamplingNearest2d</c>,
/// <c>nn.UpsamplingBilinear2d</c>, which call it) on a 4-d input [N, C, H, W], modes <c>nearest</c> and
/// <c>bilinear</c>: the arguments checked as <c>F.interpolate</c> checks them, the output size it computes
/// (<paramref name="Size"/>, or floor(in · scale_factor)), and the scales it hands its kernels (the scale factors, unless
/// <c>recompute_scale_factor</c> is True, when the kernels take in / out). The float kernels are PyTorch's CPU ones; the
/// quantized ones are in Fusion.Dsl.Quantization.
/// </summary>
/// <param name="Size">The output size (height, width), or null when a scale factor is given.</param>
/// <param name="ScaleFactor">The scale factors (height, width), or null when a size is given.</param>
/// <param name="Mode"><c>nearest</c> or <c>bilinear</c>.</param>
/// <param name="AlignCorners">Bilinear's align_corners (false for nearest, where PyTorch takes only None).</param>
/// <param name="RecomputeScaleFactor">Whether the kernels take in / out rather than the scale factors.</param>
public sealed record Interpolation(int[]? Size, double[]? ScaleFactor, string Mode, bool AlignCorners, bool RecomputeScaleFactor)
{
    /// <summary>
    /// Whether PyTorch 1.13 runs a contiguous <c>[N, C, H, W]</c> input with <paramref name="channels"/> channels and an
    /// <paramref name="height"/> × <paramref name="width"/> plane through its NHWC upsampling kernels: one channel or a
    /// 1×1 plane is channels-last contiguous too. Those kernels round differently (float nearest keeps
    /// <c>nearest_idx</c>'s special cases, bilinear takes float64 source positions), so the engine, the quantized
    /// upsampling and the ONNX export all ask this.
    /// </summary>
    public static bool TakesNhwcKernels(int channels, int height, int width) => channels == 1 || (height == 1 && width == 1);

    /// <summary>The arguments as <c>F.interpolate</c> takes them (Python values: an integer or a list of two, a number
    /// or a list of two, a string, None or a bool), checked as PyTorch checks them.</summary>
    /// <exception cref="ArgumentException">Both or neither of size and scale_factor, a mode other than nearest and
    /// bilinear (the others are not supported here), align_corners with nearest, recompute_scale_factor with a size,
    /// antialias, or a value of the wrong kind or count; the message names the argument.</exception>
    public static Interpolation FromArguments(object? size, object? scaleFactor, object? mode, object? alignCorners, object? recomputeScaleFactor, object? antialias = null)
    {
        var m = mode as string ?? (mode is null ? "nearest" : throw new ArgumentException($"interpolate: mode must be a string, got {mode}"));
        if (m is not ("nearest" or "bilinear"))
            throw new ArgumentException($"interpolate: mode '{m}' is not supported here (nearest and bilinear are)");
        if (antialias is true) throw new ArgumentException("interpolate: antialias=True is not supported here");
        if (size is not null && scaleFactor is not null) throw new ArgumentException("interpolate: only one of size or scale_factor should be defined");
        if (size is null && scaleFactor is null) throw new ArgumentException("interpolate: either size or scale_factor should be defined");
        if (alignCorners is not (null or bool)) throw new ArgumentException($"interpolate: align_corners must be None or a bool, got {alignCorners}");
        if (m == "nearest" && alignCorners is not null)
            throw new ArgumentException("interpolate: align_corners option can only be set with the interpolating modes: linear | bilinear | bicubic | trilinear");
        bool recompute = recomputeScaleFactor switch
        {
            null => false,
            bool b => b,
            _ => throw new ArgumentException($"interpolate: recompute_scale_factor must be None or a bool, got {recomputeScaleFactor}"),
        };
        if (recompute && size is not null) throw new ArgumentException("interpolate: recompute_scale_factor is not meaningful with an explicit size");
        int[]? sizes = size is null ? null : Pair(size, "size", v => v is long l && l >= 0 && l <= int.MaxValue ? (int)l : throw new ArgumentException($"interpolate: size must hold non-negative integers, got {v}"));
        double[]? scales = scaleFactor is null ? null : Pair(scaleFactor, "scale_factor", v => v switch
        {
            double d when double.IsFinite(d) && d > 0 => d,
            long l when l > 0 => l,
            _ => throw new ArgumentException($"interpolate: scale_factor must hold positive numbers, got {v}"),
        });
        return new Interpolation(sizes, scales, m, alignCorners is true, recompute);
    }

    /// <summary>The interpolation an <c>nn.Upsample</c>, <c>nn.UpsamplingNearest2d</c> or <c>nn.UpsamplingBilinear2d</c>
    /// carried as an opaque module records (its size, scale_factor, mode, align_corners and recompute_scale_factor).</summary>
    /// <exception cref="ArgumentException">Another module, or recorded arguments <see cref="FromArguments"/> refuses (the
    /// message names the module type).</exception>
    public static Interpolation FromModule(OpaqueModule module)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (module.Namespace != "torch.nn" || module.TypeName is not ("Upsample" or "UpsamplingNearest2d" or "UpsamplingBilinear2d"))
            throw new ArgumentException($"{module.Namespace}.{module.TypeName} is not nn.Upsample, nn.UpsamplingNearest2d or nn.UpsamplingBilinear2d");
        try
        {
            return FromArguments(module.Argument("size"), module.Argument("scale_factor"), module.Argument("mode", "nearest"),
                module.Argument("align_corners"), module.Argument("recompute_scale_factor"));
        }
        catch (ArgumentException e) { throw new ArgumentException($"{module.TypeName}: {e.Message}", e); }
    }

    /// <summary>One value for both spatial dimensions, or a list of two.</summary>
    private static T[] Pair<T>(object value, string name, Func<object?, T> read) => value switch
    {
        IReadOnlyList<object?> { Count: 2 } list => [read(list[0]), read(list[1])],
        IReadOnlyList<object?> list => throw new ArgumentException($"interpolate: {name} takes one value or two (height, width) for a 4-d input, got {list.Count}"),
        _ => [read(value), read(value)],
    };

    /// <summary>Whether the mode is bilinear.</summary>
    public bool Bilinear => Mode == "bilinear";

    /// <summary>The output height and width for an input of <paramref name="height"/> × <paramref name="width"/>, and
    /// the scale factors the kernels take (null where they take in / out).</summary>
    /// <exception cref="ArgumentException">An input or output dimension of 0 (PyTorch's "Input and output sizes should be
    /// greater than 0"), or one over the element limit.</exception>
    public (int Height, int Width, double? ScaleHeight, double? ScaleWidth) Output(int height, int width)
    {
        long oh = Size?[0] ?? (long)Math.Floor(height * ScaleFactor![0]), ow = Size?[1] ?? (long)Math.Floor(width * ScaleFactor![1]);
        if (height < 1 || width < 1 || oh < 1 || ow < 1)
            throw new ArgumentException($"upsample_{Mode}2d: input and output sizes should be greater than 0, but got input (H: {height}, W: {width}) output (H: {oh}, W: {ow})");
        if (oh > int.MaxValue || ow > int.MaxValue || oh * ow > Limits.MaxElements)
            throw new ArgumentException($"upsample_{Mode}2d: the output size {oh} x {ow} is over the limit of {Limits.MaxElements} elements");
        var (sh, sw) = ScaleFactor is { } s && !RecomputeScaleFactor ? (s[0], s[1]) : ((double?)null, (double?)null);
        return ((int)oh, (int)ow, sh, sw);
    }

    /// <summary>PyTorch's <c>compute_scales_value&lt;float&gt;</c>: 1 / scale_factor when the kernel takes one, else in / out,
    /// in float32 (bilinear with align_corners: (in − 1) / (out − 1), 0 for an output of 1).</summary>
    public float KernelScale(int input, int output, double? scale)
    {
        if (Bilinear && AlignCorners) return output > 1 ? (float)(input - 1) / (output - 1) : 0f;
        return scale is { } s && s > 0 ? (float)(1.0 / s) : (float)input / output;
    }

    /// <summary>The float forward on the engine (PyTorch's CPU float kernels; nearest copies values exactly).</summary>
    internal Tensor Forward(Tensor x, Pass pass)
    {
        if (x.Rank != 4)
            throw new EngineInputException($"interpolate ({Mode}) takes a 4-d input [N, C, H, W] here, got {Tensor.ShapeString(x.Shape)}", unsupported: true);
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        (int oh, int ow, double? sh, double? sw) size;
        try { size = Output(h, w); }
        catch (ArgumentException e) { throw new EngineInputException(e.Message); }
        var (oh, ow, scaleH, scaleW) = size;
        var src = x.RawFloat32;
        var output = pass.Output(checked(n * c * oh * ow));
        int planes = n * c;
        if (!Bilinear)
        {
            // Only PyTorch's NHWC kernel keeps nearest_idx's special cases.
            bool nhwc = TakesNhwcKernels(c, h, w);
            var rows = Nearest(h, oh, scaleH, nhwc);
            var cols = Nearest(w, ow, scaleW, nhwc);
            Par.For(planes, pass.Threads, (long)oh * ow, (int p) =>
            {
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++)
                        output[(p * oh + i) * ow + j] = src[(p * h + rows[i]) * w + cols[j]];
            });
        }
        else
        {
            var rows = Linear(h, oh, scaleH);
            var cols = Linear(w, ow, scaleW);
            Par.For(planes, pass.Threads, (long)oh * ow, (int p) =>
            {
                for (int i = 0; i < oh; i++)
                {
                    var (r0, r1, h0, h1) = rows[i];
                    for (int j = 0; j < ow; j++)
                    {
                        var (c0, c1, w0, w1) = cols[j];
                        int b = p * h * w;
                        output[(p * oh + i) * ow + j] = h0 * (w0 * src[b + r0 * w + c0] + w1 * src[b + r0 * w + c1])
                                                      + h1 * (w0 * src[b + r1 * w + c0] + w1 * src[b + r1 * w + c1]);
                    }
                }
            });
        }
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }

    /// <summary>The source index of each output along one dimension as PyTorch's float kernels compute it:
    /// min(floor(o · scale), in − 1) in float32; the NHWC kernel's <c>nearest_idx</c> takes the same index where the size
    /// is unchanged and half of it where it doubles (measured on 1.13: the NCHW kernel does not, so a scale factor of
    /// 1.25 on 2 rows gives rows 0, 0 there and 0, 1 in NHWC).</summary>
    private int[] Nearest(int input, int output, double? scale, bool nhwc)
    {
        var index = new int[output];
        float s = KernelScale(input, output, scale);
        for (int o = 0; o < output; o++)
            index[o] = nhwc && output == input ? o : nhwc && output == 2 * input ? o >> 1 : Math.Min((int)MathF.Floor(o * s), input - 1);
        return index;
    }

    /// <summary>PyTorch's float <c>compute_source_index_and_lambda</c>: the two source indices and their weights.</summary>
    private (int I0, int I1, float L0, float L1)[] Linear(int input, int output, double? scale)
    {
        var taps = new (int, int, float, float)[output];
        float s = KernelScale(input, output, scale);
        for (int o = 0; o < output; o++)
        {
            if (output == input) { taps[o] = (o, o, 1f, 0f); continue; }
            float real = AlignCorners ? s * o : Math.Max(s * (o + 0.5f) - 0.5f, 0f);
            int i0 = (int)real;
            float l1 = Math.Clamp(real - i0, 0f, 1f);
            taps[o] = (i0, i0 + (i0 < input - 1 ? 1 : 0), 1f - l1, l1);
        }
        return taps;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"interpolate(mode={Mode}, {(Size is { } s ? $"size=({s[0]}, {s[1]})" : $"scale_factor=({ScaleFactor![0]}, {ScaleFactor[1]})")}{(Bilinear ? $", align_corners={AlignCorners}" : "")})");
}
