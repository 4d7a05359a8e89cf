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
        // Whole vectors run past a row's last output: its extra lanes read at most Slack floats past the plane's last
        // valid read and write at most Slack past the row, into the next row (computed after it) or the slack.
        var planeLength = checked(sw * phasePlane + Slack);
        var sumsLength = checked(oh * ow + Slack);
        // Planes in a few runs per thread, each renting its buffers once: a 7x7 plane is too little work to pay for a
        // task and two pool visits of its own.
        var count = batch * g.OutChannels;
        var runs = Math.Min(count, 8 * Math.Max(1, threads));
        var shape = new PlaneShape(oh, ow, kh, kw, sh, dh, dw, sw, phaseWidth, phasePlane);
        var offsets = TapOffsets(shape);
        Par.For(runs, threads, (long)taps * oh * ow * count / runs, run =>
        {
            var plane = ArrayPool<float>.Shared.Rent(planeLength);
            var sums = ArrayPool<float>.Shared.Rent(sumsLength);
            try
            {
                fixed (float* pp = plane)
                fixed (float* acc0 = sums)
                fixed (int* tapAt = offsets)
                    for (int bc = (int)((long)run * count / runs), end = (int)((long)(run + 1) * count / runs); bc < end; bc++)
                    {
                        var (b, oc) = Math.DivRem(bc, g.OutChannels);
                        var ic = oc / multiplier;
                        Layout(input.AsSpan((b * g.Groups + ic) * height * width, height * width), height, width, zeroPoint, ph, pw, sw, phaseWidth, phasePlane, plane, planeLength);
                        fixed (float* wt = &_weights[oc * taps])
                        {
                            // 512-bit vectors for wide rows; a row of 7 or 14 wastes less of a 256-bit one.
                            if (Vector512.IsHardwareAccelerated && ow > 8) Rows<Lanes512>(pp, wt, acc0, shape, tapAt);
                            else if (Vector256.IsHardwareAccelerated) Rows<Lanes256>(pp, wt, acc0, shape, tapAt);
                            else RowsScalar(pp, wt, acc0, shape, tapAt);
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

    /// <summary>Floats past a plane and its sums that whole vectors may touch: one 512-bit vector.</summary>
    private const int Slack = 16;

    /// <summary>The sizes one plane's loops need.</summary>
    private readonly record struct PlaneShape(int OutHeight, int OutWidth, int KernelHeight, int KernelWidth, int StrideHeight,
        int DilationHeight, int DilationWidth, int Phases, int PhaseWidth, int PhasePlane);

    /// <summary>Where each tap reads, from an output's own position in the laid-out plane: kernel row i, column j at
    /// i·dh rows down, in column phase (j·dw) mod sw at (j·dw) / sw — computed once, not per output.</summary>
    private static int[] TapOffsets(PlaneShape p)
    {
        var offsets = new int[p.KernelHeight * p.KernelWidth];
        for (var i = 0; i < p.KernelHeight; i++)
            for (var j = 0; j < p.KernelWidth; j++)
                offsets[i * p.KernelWidth + j] = i * p.DilationHeight * p.PhaseWidth + (j * p.DilationWidth % p.Phases) * p.PhasePlane + j * p.DilationWidth / p.Phases;
        return offsets;
    }

    /// <summary>Every output row, <typeparamref name="TV"/>.Count outputs at a time with their sums in one register over
    /// every tap; the last vector of a row runs past it (see <see cref="Slack"/>). The products and sums are integers
    /// below 2^24, so a fused multiply-add is exact too. A 3×3 kernel keeps its nine weights and offsets in registers.</summary>
    private static unsafe void Rows<TV>(float* plane, float* wt, float* acc0, PlaneShape p, int* offsets) where TV : struct, ILanes<TV>
    {
        var taps = p.KernelHeight * p.KernelWidth;
        if (taps == 9)
        {
            Rows9<TV>(plane, wt, acc0, p, offsets);
            return;
        }
        for (var y = 0; y < p.OutHeight; y++)
        {
            var acc = acc0 + y * p.OutWidth;
            var top = plane + y * p.StrideHeight * p.PhaseWidth;
            for (var x = 0; x < p.OutWidth; x += TV.Count)
            {
                var sum = TV.Zero;
                for (var t = 0; t < taps; t++) sum = TV.FusedMultiplyAdd(TV.Broadcast(wt[t]), TV.Load(top + x + offsets[t]), sum);
                sum.Store(acc + x);
            }
        }
    }

    /// <summary><see cref="Rows{TV}"/> for nine taps, unrolled.</summary>
    private static unsafe void Rows9<TV>(float* plane, float* wt, float* acc0, PlaneShape p, int* o) where TV : struct, ILanes<TV>
    {
        TV w0 = TV.Broadcast(wt[0]), w1 = TV.Broadcast(wt[1]), w2 = TV.Broadcast(wt[2]), w3 = TV.Broadcast(wt[3]), w4 = TV.Broadcast(wt[4]);
        TV w5 = TV.Broadcast(wt[5]), w6 = TV.Broadcast(wt[6]), w7 = TV.Broadcast(wt[7]), w8 = TV.Broadcast(wt[8]);
        int o0 = o[0], o1 = o[1], o2 = o[2], o3 = o[3], o4 = o[4], o5 = o[5], o6 = o[6], o7 = o[7], o8 = o[8];
        for (var y = 0; y < p.OutHeight; y++)
        {
            var acc = acc0 + y * p.OutWidth;
            var top = plane + y * p.StrideHeight * p.PhaseWidth;
            for (var x = 0; x < p.OutWidth; x += TV.Count)
            {
                var l = top + x;
                var sum = TV.FusedMultiplyAdd(w0, TV.Load(l + o0), TV.Zero);
                sum = TV.FusedMultiplyAdd(w1, TV.Load(l + o1), sum);
                sum = TV.FusedMultiplyAdd(w2, TV.Load(l + o2), sum);
                sum = TV.FusedMultiplyAdd(w3, TV.Load(l + o3), sum);
                sum = TV.FusedMultiplyAdd(w4, TV.Load(l + o4), sum);
                sum = TV.FusedMultiplyAdd(w5, TV.Load(l + o5), sum);
                sum = TV.FusedMultiplyAdd(w6, TV.Load(l + o6), sum);
                sum = TV.FusedMultiplyAdd(w7, TV.Load(l + o7), sum);
                sum = TV.FusedMultiplyAdd(w8, TV.Load(l + o8), sum);
                sum.Store(acc + x);
            }
        }
    }

    /// <summary>The scalar form of <see cref="Rows{TV}"/>, one output at a time.</summary>
    private static unsafe void RowsScalar(float* plane, float* wt, float* acc0, PlaneShape p, int* offsets)
    {
        var taps = p.KernelHeight * p.KernelWidth;
        for (var y = 0; y < p.OutHeight; y++)
            for (var x = 0; x < p.OutWidth; x++)
            {
                var at = plane + y * p.StrideHeight * p.PhaseWidth + x;
                var sum = 0f;
                for (var t = 0; t < taps; t++) sum += wt[t] * at[offsets[t]];
                acc0[y * p.OutWidth + x] = sum;
            }
    }

    /// <summary>Where an output plane's sums go: the sums, the flat output offset of its first element, its channel.</summary>
    public delegate void PlaneSink(ReadOnlySpan<float> sums, int offset, int channel);

    /// <summary>One input plane centred (x − z), zero-padded and split into <paramref name="phases"/> column phases.</summary>
    private static void Layout(ReadOnlySpan<byte> src, int height, int width, int zeroPoint, int ph, int pw, int phases,
        int phaseWidth, int phasePlane, float[] plane, int length)
    {
        // The slack is cleared too: what the extra lanes read is then a number, whatever the pool held.
        plane.AsSpan(0, length).Clear();
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
