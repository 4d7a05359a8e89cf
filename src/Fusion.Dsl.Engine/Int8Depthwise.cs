using System.Buffers;
using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The depthwise form of <see cref="Int8Convolution"/> (one input channel per group), summed in float32, which is
/// exact here: every partial sum of (x − z)·w is an integer of magnitude at most taps·255·128, below float32's 2^24 for
/// up to <see cref="MaxTaps"/> taps, whatever the order. Each output plane reads one input plane, which it lays out once,
/// centred and zero-padded (the padding is the zero point, so it adds nothing), split into one column phase per stride
/// step so that every tap reads a contiguous run of the plane; a row of outputs is then a few vector multiply-adds per
/// tap, and leaves through the requantization (or as exact int32 sums). A GEMM would spend its 4-row register tile on a
/// single row per group.
/// </summary>
internal sealed class Int8Depthwise
{
    /// <summary>Taps per output within which a float32 sum is exact (2^24 / (255·128)).</summary>
    public const int MaxTaps = (1 << 24) / (255 * 128);

    private readonly float[] _weights;
    private readonly Int8Convolution _geometry;

    /// <summary>The weights <c>[C_out, kH·kW]</c> of <paramref name="geometry"/>, which has one input channel per group
    /// and at most <see cref="MaxTaps"/> taps.</summary>
    public Int8Depthwise(ReadOnlySpan<sbyte> weights, Int8Convolution geometry)
    {
        _geometry = geometry;
        _weights = new float[weights.Length];
        for (var i = 0; i < weights.Length; i++) _weights[i] = weights[i];
    }

    /// <summary>Computes every output plane of <paramref name="input"/> (<c>[batch, C_in, height, width]</c>) and hands
    /// its float32 sums to <paramref name="sink"/> with its flat output offset and channel.</summary>
    public unsafe void Run(byte[] input, int batch, int height, int width, int zeroPoint, int threads, PlaneSink sink)
    {
        var g = _geometry;
        var (oh, ow) = g.OutputSize(height, width);
        var (kh, kw) = g.Kernel;
        var (sh, sw) = g.Stride;
        var (ph, pw) = g.Padding;
        var (dh, dw) = g.Dilation;
        var multiplier = g.OutChannels / g.Groups;
        var paddedHeight = height + 2 * ph;
        // Column phase q holds padded columns q, q + sw, q + 2sw, ...: tap j of output x reads phase (j·dw) % sw at
        // (j·dw) / sw + x, a contiguous run.
        var phaseWidth = (width + 2 * pw + sw - 1) / sw;
        var phasePlane = paddedHeight * phaseWidth;
        var taps = kh * kw;
        Par.For(batch * g.OutChannels, threads, (long)taps * oh * ow, bc =>
        {
            var (b, oc) = Math.DivRem(bc, g.OutChannels);
            var ic = oc / multiplier;
            var plane = ArrayPool<float>.Shared.Rent(sw * phasePlane);
            var sums = ArrayPool<float>.Shared.Rent(oh * ow);
            try
            {
                Layout(input.AsSpan((b * g.Groups + ic) * height * width, height * width), height, width, zeroPoint, ph, pw, sw, phaseWidth, phasePlane, plane);
                fixed (float* pp = plane)
                fixed (float* acc0 = sums)
                fixed (float* wt = &_weights[oc * taps])
                {
                    for (var y = 0; y < oh; y++)
                    {
                        var acc = acc0 + y * ow;
                        var top = pp + y * sh * phaseWidth;
                        var x = 0;
                        // Eight outputs at a time, their sums in one register over every tap (loaded and stored once).
                        if (Vector256.IsHardwareAccelerated)
                            for (; x + 8 <= ow; x += 8)
                            {
                                var sum = Vector256<float>.Zero;
                                for (var i = 0; i < kh; i++)
                                {
                                    var line = top + i * dh * phaseWidth + x;
                                    for (var j = 0; j < kw; j++)
                                        sum += Vector256.Create(wt[i * kw + j]) * Vector256.Load(line + (j * dw % sw) * phasePlane + j * dw / sw);
                                }
                                sum.Store(acc + x);
                            }
                        for (; x < ow; x++)
                        {
                            var sum = 0f;
                            for (var i = 0; i < kh; i++)
                            {
                                var line = top + i * dh * phaseWidth + x;
                                for (var j = 0; j < kw; j++) sum += wt[i * kw + j] * line[(j * dw % sw) * phasePlane + j * dw / sw];
                            }
                            acc[x] = sum;
                        }
                    }
                    // One call per plane: a 7x7 plane requantizes in vectors as one run of 49, not seven tails of 7.
                    sink(new ReadOnlySpan<float>(acc0, oh * ow), bc * oh * ow, oc);
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(plane);
                ArrayPool<float>.Shared.Return(sums);
            }
        });
    }

    /// <summary>Where an output plane's sums go: the sums, the flat output offset of its first element, its channel.</summary>
    public delegate void PlaneSink(ReadOnlySpan<float> sums, int offset, int channel);

    /// <summary>One input plane centred (x − z), zero-padded and split into <paramref name="phases"/> column phases.</summary>
    private static void Layout(ReadOnlySpan<byte> src, int height, int width, int zeroPoint, int ph, int pw, int phases,
        int phaseWidth, int phasePlane, float[] plane)
    {
        plane.AsSpan(0, phases * phasePlane).Clear();
        for (var y = 0; y < height; y++)
        {
            var line = src.Slice(y * width, width);
            var row = (y + ph) * phaseWidth;
            if (phases == 1)
            {
                Centre(line, zeroPoint, plane.AsSpan(row + pw, width));
                continue;
            }
            // Padded column c = x + pw goes to phase c % phases at c / phases: walk each phase's columns in steps.
            for (var phase = 0; phase < phases; phase++)
            {
                var x = ((phase - pw) % phases + phases) % phases;
                var dst = plane.AsSpan(phase * phasePlane + row + (x + pw) / phases);
                for (var k = 0; x < width; x += phases, k++) dst[k] = line[x] - zeroPoint;
            }
        }
    }

    /// <summary>dst[x] = src[x] − z, eight at a time where vectors run.</summary>
    private static unsafe void Centre(ReadOnlySpan<byte> src, int zeroPoint, Span<float> dst)
    {
        var x = 0;
        fixed (byte* s = src)
        fixed (float* d = dst)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                var z = Vector256.Create((float)zeroPoint);
                for (; x + 8 <= src.Length; x += 8)
                {
                    var (lo, hi) = Vector128.Widen(Vector128.WidenLower(Vector128.CreateScalarUnsafe(*(ulong*)(s + x)).AsByte()));
                    (Vector256.ConvertToSingle(Vector256.Create(lo, hi).AsInt32()) - z).Store(d + x);
                }
            }
            for (; x < src.Length; x++) d[x] = s[x] - zeroPoint;
        }
    }
}
