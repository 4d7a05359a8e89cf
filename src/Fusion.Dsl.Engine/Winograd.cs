using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// 3×3 unit-stride convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for
/// Convolutional Neural Networks", 2016): each 2×2 output tile comes from a 4×4 input tile with 16 products per pair of
/// input and output channels instead of 36. With <c>V = Bᵀ d B</c> (input tiles), <c>U = G g Gᵀ</c> (weights, computed in
/// float64 and packed once per weight tensor) and <c>Y = Aᵀ M A</c>, the products are 16 independent GEMMs
/// <c>M[ξ] = U[ξ] · V[ξ]</c> of <c>C_out × C_in</c> by <c>C_in × tiles</c>, run by <see cref="Gemm"/> as 16 groups.
/// The transforms are additions and halvings, so the result differs from the direct product by rounding only
/// (checked against the float64 reference with the kernel tolerance); it does not depend on the thread count.
/// </summary>
internal static unsafe class Winograd
{
    private const int PackWinograd = 3;

    /// <summary>The 16 positions ξ = 4·i + j of a transformed 4×4 tile.</summary>
    private const int Xi = 16;

    /// <summary>Fewer channels than this make the transforms cost more than the products they save.</summary>
    private const int MinChannels = 16;

    /// <summary>Floats of transformed input and output tiles one pass may hold (16 MiB).</summary>
    internal const long ChunkFloats = 1 << 22;

    /// <summary>
    /// Whether <paramref name="geo"/> is a convolution this path computes: 2-d, a 3×3 kernel, unit stride and dilation,
    /// one group, at least <see cref="MinChannels"/> channels in and out, and not bound by reading its transformed weights
    /// (<see cref="WeightBound"/>). (A 3-d 1×3×3 kernel is left to the GEMM path: depth padding would give it several
    /// output planes.)
    /// </summary>
    public static bool Applies(ConvGeometry geo)
        => !geo.Transposed && geo.Rank == 2 && geo.Groups == 1 && geo.Kernel[1] == 3 && geo.Kernel[2] == 3
           && geo.UnitStride && geo.Dilation[1] == 1 && geo.Dilation[2] == 1
           && geo.InChannels >= MinChannels && geo.OutChannels >= MinChannels
           // One tile row of transformed values must fit an array (the GEMM path takes wider images).
           && (long)Xi * Math.Max(geo.InChannels, geo.OutChannels) * ((geo.Out[2] + 1) / 2) + 8 <= Array.MaxLength
           && !WeightBound(geo);

    /// <summary>Transformed weights past this many bytes no longer stay in cache between the tiles that read them.</summary>
    private const long LargeTransformBytes = 8L << 20;

    /// <summary>Tiles (of all the batch's images) below which such a layer is bound by reading its transformed weights.</summary>
    private const long MinTilesForLargeTransform = 32;

    /// <summary>
    /// Whether U is so large and the tiles so few that the products mostly stream U from memory: U is 16/9 the size of
    /// the weights the GEMM path reads, for 16/49 of its columns. Measured on resnet's 512->512 3x3 at 7x7 (16 tiles,
    /// 16.8 MB of U), min of 40 runs, three rounds each, load average 12: 3.85-3.96 ms by Winograd against 3.67-3.78 ms by
    /// the GEMM on one thread, 3.22-3.89 against 2.18-3.04 ms on two; the 256-channel layer at 7x7 (4.2 MB of U) stays
    /// faster by Winograd (0.48 against 0.70 ms). The GEMM's pack is also 9/16 the size (resnet18: 50 MB of U for its
    /// three such layers, 28 MB of pack). Two images (32 tiles, one pass) already share U enough: 5.55-5.65 ms by Winograd
    /// against 7.07-7.21 ms by the GEMM on one thread, as one 14x14 image (49 tiles: 7.39-7.53 against 11.75-11.92 ms).
    /// Again with the AVX-512 12x32 GEMM kernel (one thread, min of 30, three rounds): one 7x7 image 3.52-3.70 ms by
    /// Winograd against 2.68-2.75 ms by the GEMM, two images 3.70-3.85 against 5.30-5.41 ms, 256 channels 0.50 against 0.71.
    /// </summary>
    private static bool WeightBound(ConvGeometry geo)
        => (long)Xi * geo.InChannels * geo.OutChannels * sizeof(float) > LargeTransformBytes
           && (long)geo.Batch * ((geo.Out[1] + 1) / 2) * ((geo.Out[2] + 1) / 2) < MinTilesForLargeTransform;

    /// <summary>
    /// The convolution of a batched input through <paramref name="ep"/> (the caller checked <see cref="Applies"/>), or null
    /// when the input or the weight holds an infinity or a NaN: the transforms add a value to itself with opposite signs,
    /// so an infinity would come out as NaN where the direct product gives ±∞, and such layers go to the GEMM path.
    /// Computed in passes over tile rows that hold at most <paramref name="chunkFloats"/> transformed values (tests pass
    /// less than <see cref="ChunkFloats"/> to reach several passes on small inputs; the passes change no bit). An
    /// epilogue's residual is added in the output transform, element by element of the output (it must be as long).
    /// </summary>
    public static Tensor? TryForward(Conv conv, ConvGeometry geo, Tensor input, Epilogue ep, Pass forwardPass, long chunkFloats = ChunkFloats)
    {
        if (ep.Residual is { } residual && residual.Length != (long)geo.Batch * geo.OutChannels * geo.OutVolume)
            throw new ArgumentException($"the residual has {residual.Length} elements, the output {(long)geo.Batch * geo.OutChannels * geo.OutVolume}: it must have the output's shape", nameof(ep));
        var threads = forwardPass.Threads;
        var x = input.RawFloat32;
        int cin = geo.InChannels, cout = geo.OutChannels, oh = geo.Out[1], ow = geo.Out[2];
        int th = (oh + 1) / 2, tw = (ow + 1) / 2;
        // Tile rows per pass: the transformed tiles (16 per tile and channel, in and out) stay within ChunkFloats, so a
        // large image costs bounded scratch memory (resnet's layers at 224x224 take one pass).
        var chunkRows = (int)Math.Clamp(chunkFloats / ((long)Xi * (cin + cout) * tw), 1, th);
        // Images per pass: when one pass takes a whole image, several images whose tiles fit the budget go through one
        // pass, their tiles side by side as columns of the same 16 GEMMs, so a batch reads U once per pass rather than
        // once per image (layer4 of resnet18 holds 17 MB of U for 16 tiles an image) and pays the pass's three hand-offs
        // between cores once. The transforms see the images' tiles as channels c·images + n of one wider problem.
        var images = chunkRows < th ? 1 : (int)Math.Clamp(chunkFloats / ((long)Xi * (cin + cout) * th * tw), 1, geo.Batch);
        var tiles = chunkRows * tw;
        // The output transform finds channel co·images + n's epilogue at that index: each channel's entry, repeated per image.
        static float[]? PerImage(float[]? a, int k) => a is null || k == 1 ? a : [.. a.SelectMany(f => Enumerable.Repeat(f, k))];
        var wideEp = new Epilogue(PerImage(ep.Scale, images), PerImage(ep.Shift, images), ep.Activation, ep.Residual);
        var weight = conv.Weight;
        var packedU = forwardPass.Pack(weight, (PackWinograd, 1, 0), () => PackWeights(weight, cin, cout, threads));
        if (packedU.Length == 0) return null;
        var output = forwardPass.Output(checked(geo.Batch * cout * oh * ow));
        var v = ArrayPool<float>.Shared.Rent(checked(Xi * cin * tiles * images));
        // Eight floats of slack: the output transform's vector loads of a row shorter than eight tiles run past its end.
        var m = ArrayPool<float>.Shared.Rent(checked(Xi * cout * tiles * images + 8));
        try
        {
            for (var ty0 = 0; ty0 < th; ty0 += chunkRows)
            {
                // The GEMM operands' layout depends on the pass's tile count only, not on the image.
                var rows = Math.Min(chunkRows, th - ty0);
                var first = ty0;
                for (var n0 = 0; n0 < geo.Batch; n0 += images)
                {
                    var pass = Math.Min(images, geo.Batch - n0);
                    // A last, shorter pass repeats each channel's entry fewer times.
                    var passEp = pass == images ? wideEp : new Epilogue(PerImage(ep.Scale, pass), PerImage(ep.Shift, pass), ep.Activation, ep.Residual);
                    var count = rows * tw;
                    var columns = pass * count;
                    var koff = new int[cin];
                    for (var c = 0; c < cin; c++) koff[c] = c * columns;
                    var b = new BSource(v, 0, 0, (long)cin * columns, koff, null, columns);
                    var target = new CTarget(m, 0, 0, (long)cout * columns, columns, 1, null);
                    var nonFinite = 0;
                    Par.For(cin * pass, threads, (long)count * 64, cn =>
                    {
                        int c = cn / pass, n = cn % pass;
                        var start = ((long)(n0 + n) * cin + c) * geo.InVolume;
                        if (!TransformInput(x, start, v, c * pass + n, cin * pass, geo, first, rows, tw)) Volatile.Write(ref nonFinite, 1);
                    });
                    // Checked before anything is written for these rows; the output array is simply dropped.
                    if (nonFinite != 0) return null;
                    Gemm.Run(packedU, cout, cin, b, target, Epilogue.None, 1, Xi, threads);
                    Par.For(cout * pass, threads, (long)count * 48, cn =>
                    {
                        int co = cn / pass, n = cn % pass;
                        TransformOutput(m, co * pass + n, cout * pass, output, ((long)(n0 + n) * cout + co) * oh * ow, oh, ow, first, rows, tw, passEp);
                    });
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(v);
            ArrayPool<float>.Shared.Return(m);
        }
        return Tensor.Adopt(output, geo.OutputShape);
    }

    /// <summary>
    /// <c>U = G g Gᵀ</c> for every (output, input) channel pair, with <c>G = [[1,0,0],[½,½,½],[½,-½,½],[0,0,1]]</c>, in
    /// float64 rounded once, written straight into <see cref="Gemm.PackA"/>'s layout for 16 groups of <c>C_out × C_in</c>
    /// (no unpacked copy: for resnet18 it would be 78 MB of garbage at the first pass). A pending BatchNorm fold is read
    /// through its recipe, each weight rounded as the computed fold rounds it. A weight holding an infinity or a NaN gives
    /// an empty array, which <see cref="TryForward"/> reads as "not for this path".
    /// </summary>
    internal static float[] PackWeights(Tensor weight, int cin, int cout, int threads)
    {
        var fold = weight.Pending as PendingFold;
        var w = fold is null ? weight.RawFloat32 : fold.Source;
        var scale = fold?.ChannelScale;
        if (scale is not null && scale.Any(f => !double.IsFinite(f))) return [];
        const int mr = Gemm.MR;
        var panels = Gemm.Panels(cout);
        // Element (ξ, co, ci) of the packed operand: group ξ, row panel co / MR, depth ci, lane co % MR.
        var groupLength = (long)panels * cin * mr;
        var packed = GC.AllocateUninitializedArray<float>(checked((int)(Xi * groupLength)));
        var vector = Avx.IsSupported;
        var nonFinite = 0;
        Par.For(panels, threads, (long)cin * mr * 64, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int p) =>
        {
            // The panel's rows are checked just before they are transformed, so the transform reads them from cache, not
            // from memory a second time as after a separate pass over the whole weight.
            var perChannel = (long)cin * 9;
            if (!AllFinite(w.AsSpan().Slice((int)(p * mr * perChannel), (int)(Math.Min(mr, cout - p * mr) * perChannel))))
            {
                Volatile.Write(ref nonFinite, 1);
                return;
            }
            var ci = 0;
            if (vector && (p + 1) * mr <= cout)
                fixed (float* ws = w, dst = packed)
                fixed (double* sc = scale)
                    ci = TransformPanel(ws, sc, dst, p, cin, groupLength);
            for (var lane = 0; lane < mr; lane++)
                for (var c = ci; c < cin; c++) TransformPair(w, scale, packed, groupLength, p, lane, c, cin, cout);
        });
        return nonFinite != 0 ? [] : packed;
    }

    /// <summary>
    /// <see cref="TransformPair"/> for every lane of the full row panel <paramref name="p"/> and the input channels in pairs,
    /// in vectors of four float64 values: twelve (lane, channel) pairs per step, whose sixteen transformed values each are
    /// twelve consecutive floats of their group, so every store is a whole vector. The same operations in the same order
    /// as the scalar transform (halving is multiplying by ½, which rounds identically), so the same bits. Returns the
    /// channels done (an odd last one is left to the scalar transform).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int TransformPanel(float* w, double* scale, float* packed, int p, int cin, long groupLength)
    {
        const int mr = Gemm.MR;
        var row = cin * 9;
        var src = w + (long)p * mr * row;
        var dst = packed + (long)p * cin * mr;
        var co = p * mr;
        Vector256<double> s0 = default, s1 = default, s2 = default;
        if (scale != null)
        {
            s0 = Vector256.Create(scale[co], scale[co + 1], scale[co + 2], scale[co + 3]);
            s1 = Vector256.Create(scale[co + 4], scale[co + 5], scale[co], scale[co + 1]);
            s2 = Vector256.Create(scale[co + 2], scale[co + 3], scale[co + 4], scale[co + 5]);
        }
        var ci = 0;
        for (; ci + 2 <= cin; ci += 2)
        {
            // Slot q of the twelve is lane q % 6 of channel ci + q / 6, whose nine taps start at lane·row + (q / 6)·9.
            var s = src + ci * 9;
            var d = dst + ci * mr;
            TransformSlots(s, s + row, s + 2 * row, s + 3 * row, scale != null, s0, d, groupLength);
            TransformSlots(s + 4 * row, s + 5 * row, s + 9, s + row + 9, scale != null, s1, d + 4, groupLength);
            TransformSlots(s + 2 * row + 9, s + 3 * row + 9, s + 4 * row + 9, s + 5 * row + 9, scale != null, s2, d + 8, groupLength);
        }
        return ci;
    }

    /// <summary>
    /// <c>G g Gᵀ</c> of the four 3×3 kernels at <paramref name="k0"/> … <paramref name="k3"/>, folded by
    /// <paramref name="scale"/> when <paramref name="folded"/>, stored as four consecutive floats at
    /// <paramref name="dst"/> + ξ·<paramref name="groupLength"/>. The kernels' first eight taps are transposed in
    /// registers (a gather per tap costs several times more).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransformSlots(float* k0, float* k1, float* k2, float* k3, bool folded, Vector256<double> scale, float* dst, long groupLength)
    {
        Vector256<float> r0 = Vector256.Load(k0), r1 = Vector256.Load(k1), r2 = Vector256.Load(k2), r3 = Vector256.Load(k3);
        // Taps (0 | 4), (1 | 5), (2 | 6), (3 | 7) of the four kernels in the low | high halves.
        RowOps.Transpose4x4Halves(r0, r1, r2, r3, out var t04, out var t15, out var t26, out var t37);
        var t0 = Tap(t04.GetLower(), folded, scale);
        var t1 = Tap(t15.GetLower(), folded, scale);
        var t2 = Tap(t26.GetLower(), folded, scale);
        var t3 = Tap(t37.GetLower(), folded, scale);
        var t4 = Tap(t04.GetUpper(), folded, scale);
        var t5 = Tap(t15.GetUpper(), folded, scale);
        var t6 = Tap(t26.GetUpper(), folded, scale);
        var t7 = Tap(t37.GetUpper(), folded, scale);
        var t8 = Tap(Vector128.Create(k0[8], k1[8], k2[8], k3[8]), folded, scale);
        var half = Vector256.Create(0.5);
        // Rows of G·g: [g0], [(g0 + g1 + g2)/2], [(g0 - g1 + g2)/2], [g2] over the kernel's rows, column by column.
        OutputRow(t0, t1, t2, dst, groupLength, half);
        OutputRow((t0 + t3 + t6) * half, (t1 + t4 + t7) * half, (t2 + t5 + t8) * half, dst + 4 * groupLength, groupLength, half);
        OutputRow((t0 - t3 + t6) * half, (t1 - t4 + t7) * half, (t2 - t5 + t8) * half, dst + 8 * groupLength, groupLength, half);
        OutputRow(t6, t7, t8, dst + 12 * groupLength, groupLength, half);
    }

    /// <summary>One tap of four kernels as float64: the weight, or its fold rounded to float32 as the fold rounds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> Tap(Vector128<float> taps, bool folded, Vector256<double> scale)
    {
        var t = Avx.ConvertToVector256Double(taps);
        return folded ? Avx.ConvertToVector256Double(Avx.ConvertToVector128Single(t * scale)) : t;
    }

    /// <summary>A row <c>[a, b, c]</c> of G·g times Gᵀ, <c>[a, (a+b+c)/2, (a-b+c)/2, c]</c>, rounded to float32 at ξ = 4·i … 4·i + 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputRow(Vector256<double> a, Vector256<double> b, Vector256<double> c, float* dst, long groupLength, Vector256<double> half)
    {
        Vector128.Store(Avx.ConvertToVector128Single(a), dst);
        Vector128.Store(Avx.ConvertToVector128Single((a + b + c) * half), dst + groupLength);
        Vector128.Store(Avx.ConvertToVector128Single((a - b + c) * half), dst + 2 * groupLength);
        Vector128.Store(Avx.ConvertToVector128Single(c), dst + 3 * groupLength);
    }

    /// <summary>
    /// <c>U = G g Gᵀ</c> of lane <paramref name="lane"/> of row panel <paramref name="p"/> and input channel
    /// <paramref name="ci"/> (zeros for a padding row past <paramref name="cout"/>), in float64 rounded once.
    /// </summary>
    private static void TransformPair(float[] w, double[]? scale, float[] packed, long groupLength, int p, int lane, int ci, int cin, int cout)
    {
        const int mr = Gemm.MR;
        var co = p * mr + lane;
        var at = ((long)p * cin + ci) * mr + lane;
        if (co >= cout)
        {
            for (var xi = 0; xi < Xi; xi++) packed[xi * groupLength + at] = 0f;
            return;
        }
        Span<double> g = stackalloc double[9];
        Span<double> gg = stackalloc double[12];
        var src = ((long)co * cin + ci) * 9;
        for (var t = 0; t < 9; t++) g[t] = scale is null ? w[src + t] : PendingFold.Element(w[src + t], scale[co]);
        // G·g: 4 rows of 3.
        for (var col = 0; col < 3; col++)
        {
            double g0 = g[col], g1 = g[3 + col], g2 = g[6 + col];
            gg[col] = g0;
            gg[3 + col] = (g0 + g1 + g2) / 2;
            gg[6 + col] = (g0 - g1 + g2) / 2;
            gg[9 + col] = g2;
        }
        // (G·g)·Gᵀ: each row [a, b, c] becomes [a, (a+b+c)/2, (a-b+c)/2, c].
        for (var i = 0; i < 4; i++)
        {
            double a = gg[3 * i], b = gg[3 * i + 1], c = gg[3 * i + 2];
            packed[4 * i * groupLength + at] = (float)a;
            packed[(4 * i + 1) * groupLength + at] = (float)((a + b + c) / 2);
            packed[(4 * i + 2) * groupLength + at] = (float)((a - b + c) / 2);
            packed[(4 * i + 3) * groupLength + at] = (float)c;
        }
    }

    /// <summary>Whether every value is finite (neither infinite nor NaN): <c>x·0</c> is 0 for those and NaN otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        var i = 0;
        var acc = Vector256<float>.Zero;
        for (; i <= values.Length - 8; i += 8) acc += Vector256.Create(values.Slice(i, 8)) * Vector256<float>.Zero;
        var rest = 0f;
        for (; i < values.Length; i++) rest += values[i] * 0f;
        return Vector256.Sum(acc) + rest == 0f;
    }

    /// <summary>
    /// <c>V = Bᵀ d B</c> of the tiles in tile rows <c>[ty0, ty0 + th)</c> of channel <paramref name="c"/>, with
    /// <c>Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]</c>, into <c>v[ξ][c][tile]</c>. The padded rows they read are first
    /// split into even and odd columns (rows past the padded extent are zeros), so the four columns of a tile row are
    /// unit-stride reads. Returns false, leaving <paramref name="v"/> incomplete, when those rows hold an infinity or a NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TransformInput(float[] x, long channelStart, float[] v, int c, int cin, ConvGeometry geo, int ty0, int th, int tw)
    {
        int rows = 2 * th + 2, half = tw + 1, tiles = th * tw;
        var plane = (long)rows * half;
        var scratch = ArrayPool<float>.Shared.Rent(checked((int)(2 * plane + 2 * half + 8)));
        try
        {
            fixed (float* xs = x, vs = v, buf = scratch)
            {
                float* even = buf, padded = buf + 2 * plane;
                var src = xs + channelStart;
                for (var r = 0; r < rows; r++)
                {
                    var pr = 2 * ty0 + r;
                    var sr = pr < geo.Padded[1] ? ConvGeometry.SourceIndex(pr - geo.PadLeft[1], geo.In[1], geo.Mode) : -1;
                    if (sr < 0)
                    {
                        new Span<float>(even + (long)r * half, half).Clear();
                        new Span<float>(even + plane + (long)r * half, half).Clear();
                        continue;
                    }
                    ConvKernels.PadRow(src + (long)sr * geo.In[2], padded, geo.In[2], geo.Padded[2], geo.PadLeft[2], 2 * half, geo.Mode);
                    RowOps.Deinterleave(padded, even + (long)r * half, half, 2, plane);
                }
                // The even and odd planes hold every input value these tile rows read (padding values are copies).
                if (!AllFinite(new ReadOnlySpan<float>(even, (int)(2 * plane)))) return false;
                var odd = even + plane;
                var dst = vs + (long)c * tiles;
                Span<float> t = stackalloc float[16];
                var xiStride = (long)cin * tiles;
                for (var ty = 0; ty < th; ty++)
                {
                    var tx = 0;
                    // Sixteen tiles per block where AVX-512 runs and the row has sixteen, else eight; the transform only
                    // adds and subtracts, lane by lane, so the width changes no bit.
                    if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported && tw >= Lanes512.Count)
                        tx = InputRow<Lanes512>(even, odd, half, ty, tw, dst + (long)ty * tw, xiStride);
                    else if (Avx.IsSupported)
                        tx = InputRow<Lanes256>(even, odd, half, ty, tw, dst + (long)ty * tw, xiStride);
                    for (; tx < tw; tx++)
                    {
                        for (var i = 0; i < 4; i++)
                        {
                            var at = (long)(2 * ty + i) * half + tx;
                            float e0 = even[at], o0 = odd[at], e1 = even[at + 1], o1 = odd[at + 1];
                            t[4 * i] = e0 - e1; t[4 * i + 1] = o0 + e1; t[4 * i + 2] = e1 - o0; t[4 * i + 3] = o0 - o1;
                        }
                        var d = dst + (long)ty * tw + tx;
                        for (var j = 0; j < 4; j++)
                        {
                            d[j * xiStride] = t[j] - t[8 + j];
                            d[(4 + j) * xiStride] = t[4 + j] + t[8 + j];
                            d[(8 + j) * xiStride] = t[8 + j] - t[4 + j];
                            d[(12 + j) * xiStride] = t[4 + j] - t[12 + j];
                        }
                    }
                }
            }
            return true;
        }
        finally
        {
            ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// The vector part of <see cref="TransformInput"/> for tile row <paramref name="ty"/>: blocks of
    /// <c>TV.Count</c> tiles, the last partial block moved back to end at the row's last tile, so it recomputes (and
    /// rewrites with the same bits) a few tiles instead of leaving them to scalar code. A row of fewer tiles than a
    /// block (only at 256 bits) is one block whose surplus lanes read the next rows (inside the scratch buffer) and are
    /// masked off when stored. Returns the first tile left to scalar code (always <paramref name="tw"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int InputRow<TV>(float* even, float* odd, int half, int ty, int tw, float* dst, long xiStride) where TV : struct, ILanes<TV>
    {
        var n = TV.Count;
        var mask = TV.FirstLanes(Math.Min(n, tw));
        var tx = 0;
        for (; tx < tw; tx += n)
        {
            tx = tw >= n ? Math.Min(tx, tw - n) : 0;
            var at = (long)2 * ty * half + tx;
            Row(even + at, odd + at, out TV t00, out var t01, out var t02, out var t03);
            Row(even + at + half, odd + at + half, out TV t10, out var t11, out var t12, out var t13);
            Row(even + at + 2 * half, odd + at + 2 * half, out TV t20, out var t21, out var t22, out var t23);
            Row(even + at + 3 * half, odd + at + 3 * half, out TV t30, out var t31, out var t32, out var t33);
            var d = dst + tx;
            Column(t00, t10, t20, t30, d, 0, xiStride, mask);
            Column(t01, t11, t21, t31, d, 1, xiStride, mask);
            Column(t02, t12, t22, t32, d, 2, xiStride, mask);
            Column(t03, t13, t23, t33, d, 3, xiStride, mask);
        }
        return tx;
    }

    /// <summary>One tile row times B for a block of tiles: columns (2t, 2t+1, 2t+2, 2t+3) are (even[t], odd[t], even[t+1], odd[t+1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row<TV>(float* even, float* odd, out TV r0, out TV r1, out TV r2, out TV r3) where TV : struct, ILanes<TV>
    {
        var e0 = TV.Load(even);
        var o0 = TV.Load(odd);
        var e1 = TV.Load(even + 1);
        var o1 = TV.Load(odd + 1);
        r0 = e0 - e1;
        r1 = o0 + e1;
        r2 = e1 - o0;
        r3 = o0 - o1;
    }

    /// <summary>Bᵀ applied to column <paramref name="j"/> of a block of tiles, the lanes of <paramref name="mask"/> stored at ξ = 4·i + j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Column<TV>(TV t0, TV t1, TV t2, TV t3, float* d, int j, long xiStride, TV mask) where TV : struct, ILanes<TV>
    {
        (t0 - t2).Store(d + j * xiStride, mask);
        (t1 + t2).Store(d + (4 + j) * xiStride, mask);
        (t2 - t1).Store(d + (8 + j) * xiStride, mask);
        (t1 - t3).Store(d + (12 + j) * xiStride, mask);
    }

    /// <summary>
    /// <c>Y = Aᵀ M A</c> of the tiles in tile rows <c>[ty0, ty0 + th)</c> of output channel <paramref name="co"/>, with
    /// <c>Aᵀ = [[1,1,1,0],[0,1,-1,-1]]</c>, through the epilogue into the output plane (tiles past an odd height or width
    /// write only their valid half). The epilogue's residual, when it has one, is read at the output's own indices (its
    /// length was checked against the output's by <see cref="TryForward"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransformOutput(float[] m, int co, int cout, float[] output, long planeStart, int oh, int ow, int ty0, int th, int tw, Epilogue ep)
    {
        var tiles = th * tw;
        var xiStride = (long)cout * tiles;
        var (scale, shift) = ep.At(co);
        var hasScale = ep.Scale is not null;
        var act = ep.Activation;
        fixed (float* ms = m, os = output, rs = ep.Residual)
        {
            var src = ms + (long)co * tiles;
            var plane = os + planeStart;
            var resPlane = rs == null ? null : rs + planeStart;
            var y = stackalloc float[32];  // room for one interleaved 512-bit block pair
            for (var ty = 0; ty < th; ty++)
            {
                var oy = 2 * (ty0 + ty);
                var tx = 0;
                // Sixteen or eight tiles per block, as in TransformInput.
                if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported && tw >= Lanes512.Count)
                    tx = OutputRow<Lanes512>(src + (long)ty * tw, tw, xiStride, plane, resPlane, oy, oh, ow, scale, shift, hasScale, act, y);
                else if (Avx2.IsSupported)
                    tx = OutputRow<Lanes256>(src + (long)ty * tw, tw, xiStride, plane, resPlane, oy, oh, ow, scale, shift, hasScale, act, y);
                for (; tx < tw; tx++)
                {
                    var s = src + (long)ty * tw + tx;
                    float s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
                    RowSum(s, 0, xiStride, ref s00, ref s01);
                    RowSum(s, 1, xiStride, ref s10, ref s11);
                    RowSum(s, 2, xiStride, ref s20, ref s21);
                    RowSum(s, 3, xiStride, ref s30, ref s31);
                    var at = (long)oy * ow + 2 * tx;
                    var two = 2 * tx + 1 < ow;
                    Put(plane + at, resPlane == null ? null : resPlane + at, s00 + s10 + s20, s01 + s11 + s21, two, scale, shift, hasScale, act);
                    if (oy + 1 >= oh) continue;
                    at += ow;
                    Put(plane + at, resPlane == null ? null : resPlane + at, s10 - s20 - s30, s11 - s21 - s31, two, scale, shift, hasScale, act);
                }
            }
        }
    }

    /// <summary>One or two (<paramref name="two"/>) adjacent outputs of the scalar tail through the epilogue, each with its residual when <paramref name="res"/> is not null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put(float* dst, float* res, float v0, float v1, bool two, float scale, float shift, bool hasScale, Act act)
    {
        dst[0] = res == null ? Epilogue.Apply(v0, scale, shift, hasScale, act) : Epilogue.Apply(v0, scale, shift, hasScale, res[0], act);
        if (two) dst[1] = res == null ? Epilogue.Apply(v1, scale, shift, hasScale, act) : Epilogue.Apply(v1, scale, shift, hasScale, res[1], act);
    }

    /// <summary>
    /// The vector part of <see cref="TransformOutput"/> for the tile row at <paramref name="src"/> (output rows
    /// <paramref name="oy"/> and <c>oy + 1</c>): blocks of <c>TV.Count</c> tiles, as in <see cref="InputRow"/>; a row
    /// of fewer tiles than a block is one block whose surplus lanes (read past the row, inside the buffer) are never
    /// stored. Returns the first tile left to scalar code (always <paramref name="tw"/>). With a residual plane
    /// <paramref name="res"/> (same layout as <paramref name="plane"/>) the epilogue's values are stored without the
    /// activation, then <see cref="AddResidual"/> adds the residual and applies it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int OutputRow<TV>(float* src, int tw, long xiStride, float* plane, float* res, int oy, int oh, int ow, float scale, float shift,
                                     bool hasScale, Act act, float* scratch) where TV : struct, ILanes<TV>
    {
        var n = TV.Count;
        var vs = TV.Broadcast(scale);
        var vb = TV.Broadcast(shift);
        // Without a residual the activation goes with the scale and shift; with one it must wait for the add.
        var early = res == null ? act : Act.None;
        var tx = 0;
        for (; tx < tw; tx += n)
        {
            tx = tw >= n ? Math.Min(tx, tw - n) : 0;
            var s = src + tx;
            RowSum(s, 0, xiStride, out TV s00, out var s01);
            RowSum(s, 1, xiStride, out TV s10, out var s11);
            RowSum(s, 2, xiStride, out TV s20, out var s21);
            RowSum(s, 3, xiStride, out TV s30, out var s31);
            var ox = 2 * tx;
            var at = (long)oy * ow + ox;
            TV.StoreInterleaved(TV.Apply(s00 + s10 + s20, vs, vb, hasScale, early), TV.Apply(s01 + s11 + s21, vs, vb, hasScale, early),
                plane + at, ow - ox, scratch);
            if (res != null) AddResidual(plane + at, res + at, Math.Min(2 * n, ow - ox), act);
            if (oy + 1 < oh)
            {
                TV.StoreInterleaved(TV.Apply(s10 - s20 - s30, vs, vb, hasScale, early), TV.Apply(s11 - s21 - s31, vs, vb, hasScale, early),
                    plane + at + ow, ow - ox, scratch);
                if (res != null) AddResidual(plane + at + ow, res + at + ow, Math.Min(2 * n, ow - ox), act);
            }
        }
        return tx;
    }

    /// <summary>
    /// <c>dst[q] = act(dst[q] + res[q])</c> for the <paramref name="count"/> values just stored (still in L1): the residual
    /// added to the stored float32 epilogue values, then the activation, as the unfused graph does. Kept out of line and
    /// after the interleaved store, so the transform's loop without a residual is the code it was before residuals.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AddResidual(float* dst, float* res, int count, Act act)
    {
        var q = 0;
        for (; q <= count - 8; q += 8) Vector256.Store(Epilogue.Activate(Vector256.Load(dst + q) + Vector256.Load(res + q), act), dst + q);
        for (; q < count; q++) dst[q] = Epilogue.Activate(dst[q] + res[q], act);
    }

    /// <summary>Row <paramref name="i"/> of a block of tiles times A: <c>(m₀ + m₁ + m₂, m₁ - m₂ - m₃)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowSum<TV>(float* s, int i, long xiStride, out TV r0, out TV r1) where TV : struct, ILanes<TV>
    {
        var m0 = TV.Load(s + 4 * i * xiStride);
        var m1 = TV.Load(s + (4 * i + 1) * xiStride);
        var m2 = TV.Load(s + (4 * i + 2) * xiStride);
        var m3 = TV.Load(s + (4 * i + 3) * xiStride);
        r0 = m0 + m1 + m2;
        r1 = m1 - m2 - m3;
    }

    /// <summary>Scalar counterpart of the vector <see cref="RowSum{TV}(float*, int, long, out TV, out TV)"/>, same order of additions.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowSum(float* s, int i, long xiStride, ref float r0, ref float r1)
    {
        float m0 = s[4 * i * xiStride], m1 = s[(4 * i + 1) * xiStride], m2 = s[(4 * i + 2) * xiStride], m3 = s[(4 * i + 3) * xiStride];
        r0 = m0 + m1 + m2;
        r1 = m1 - m2 - m3;
    }
}
