using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The right-hand matrix of a GEMM, never materialised: element <c>(k, j)</c> of problem <c>(n, g)</c> is
/// <c>Data[Offset + n·ImageStride + g·GroupStride + KOff[k] + col(j)]</c> with <c>col(j) = j</c> when
/// <see cref="ColBase"/> is null (a Toeplitz view: stride-1 convolution over a padded input, a plain matrix) and
/// <c>ColBase[j]</c> otherwise (strided convolution, a transposed read). It is packed strip by strip, straight from
/// the input, so im2col never exists as a whole.
/// </summary>
internal readonly struct BSource(float[] data, long offset, long imageStride, long groupStride, int[] kOff, int[]? colBase, int columns)
{
    public float[] Data { get; } = data;
    public long Offset { get; } = offset;
    public long ImageStride { get; } = imageStride;
    public long GroupStride { get; } = groupStride;
    public int[] KOff { get; } = kOff;
    public int[]? ColBase { get; } = colBase;
    public int Columns { get; } = columns;
}

/// <summary>
/// Where a GEMM result goes: row <c>m</c>, column <c>j</c> of problem <c>(n, g)</c> lands at
/// <c>Data[Offset + n·ImageStride + g·GroupStride + m·RowStride + map(j)·ColStride]</c>, where <c>map</c> is
/// <see cref="ColMap"/> (entries of -1 are padding columns of a Toeplitz view and are dropped) or the identity.
/// </summary>
internal readonly struct CTarget(float[] data, long offset, long imageStride, long groupStride, int rowStride, int colStride, int[]? colMap)
{
    public float[] Data { get; } = data;
    public long Offset { get; } = offset;
    public long ImageStride { get; } = imageStride;
    public long GroupStride { get; } = groupStride;
    public int RowStride { get; } = rowStride;
    public int ColStride { get; } = colStride;
    public int[]? ColMap { get; } = colMap;
}

/// <summary>
/// Single-precision GEMM <c>C = epilogue(A·B)</c> for batches of grouped problems: A (weights) packed into
/// <see cref="MR"/>-row panels once per weight tensor (kept by the session's <see cref="PackStore"/>), B packed per task
/// into <see cref="NR"/>-column panels, a 6×16 register-blocked FMA micro-kernel, and bias/BatchNorm/activation applied
/// while the tile is written out. Tasks are (image, group, row block, column strip) and run on up to <c>threads</c> cores.
/// </summary>
internal static unsafe class Gemm
{
    public const int MR = 6;
    public const int NR = 16;

    /// <summary>Bytes of packed B (one depth chunk of a strip) a task keeps in L2 while it sweeps the row panels.</summary>
    private const int StripBytes = 128 * 1024;

    /// <summary>
    /// Depth chunk: deeper products run chunk by chunk so a chunk of an A panel (KC·MR floats) and of a B panel
    /// (KC·NR) stay in L1 and every A panel is read once per strip, not once per column panel. Accumulators are
    /// carried across chunks in the same order, so chunking changes no bit of the result.
    /// </summary>
    private const int KC = 256;

    public static int Panels(int m) => (m + MR - 1) / MR;

    /// <summary>
    /// Packs A for <paramref name="groups"/> problems: element (m, k) of group g is
    /// <c>src[g·groupStride + m·rowStride + k·colStride]</c>, times <c>rowScale[g·m + m]</c> rounded to float32 when
    /// <paramref name="rowScale"/> is given. Layout: per group, per MR-row panel, per k, MR values (zero-padded).
    /// Panels are packed on up to <paramref name="threads"/> cores.
    /// </summary>
    public static float[] PackA(float[] src, int groups, int m, int k, long groupStride, long rowStride, long colStride,
                                double[]? rowScale = null, int threads = 1)
    {
        var panels = Panels(m);
        var panelLength = (long)k * MR;
        // Every element is written below, padding rows included, so the array need not be cleared first: a network's
        // first pass packs all its weights, and clearing would write them all twice.
        var packed = GC.AllocateUninitializedArray<float>(checked((int)(groups * panels * panelLength)));
        // Rows of unit column stride (convolution and Linear weights) are transposed in vectors, a full panel at a time.
        var vector = Avx.IsSupported && colStride == 1;
        Par.For(groups * panels, threads, panelLength, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int gp) =>
        {
            int g = gp / panels, p = gp % panels;
            var dst = packed.AsSpan((int)(gp * panelLength), (int)panelLength);
            var done = 0;
            if (vector && (p + 1) * MR <= m)
                fixed (float* s = src, d = dst)
                fixed (double* sc = rowScale)
                    done = TransposePanel(s + g * groupStride + p * MR * rowStride, rowStride, k, sc == null ? null : sc + g * m + p * MR, d);
            for (var r = 0; r < MR; r++)
            {
                var row = p * MR + r;
                if (row >= m)
                {
                    for (var kk = done; kk < k; kk++) dst[kk * MR + r] = 0f;
                    continue;
                }
                var s = g * groupStride + row * rowStride;
                if (rowScale is null)
                    for (var kk = done; kk < k; kk++) dst[kk * MR + r] = src[s + kk * colStride];
                else
                {
                    // The fold's own rounding, so the pack holds exactly the folded weight's bits.
                    var scale = rowScale[g * m + row];
                    for (var kk = done; kk < k; kk++) dst[kk * MR + r] = PendingFold.Element(src[s + kk * colStride], scale);
                }
            }
        });
        return packed;
    }

    /// <summary>
    /// <see cref="PackA"/>'s loop for the six rows of a full panel at <paramref name="src"/> (<paramref name="rowStride"/>
    /// apart, unit column stride), eight depth steps at a time: each row's eight values are scaled as the fold rounds them
    /// (float64 product, rounded to float32 once) when <paramref name="scale"/> (six factors) is given, rows 0-3 are
    /// transposed by 4×4 blocks and rows 4-5 interleaved, and every depth step's six values are written as one run.
    /// Returns the depth steps done; the rest (fewer than eight) are left to the scalar loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int TransposePanel(float* src, long rowStride, int k, double* scale, float* dst)
    {
        var kk = 0;
        for (; kk + 8 <= k; kk += 8, dst += 8 * MR)
        {
            var s = src + kk;
            var r0 = PackRow(s, 0, rowStride, scale);
            var r1 = PackRow(s, 1, rowStride, scale);
            var r2 = PackRow(s, 2, rowStride, scale);
            var r3 = PackRow(s, 3, rowStride, scale);
            var r4 = PackRow(s, 4, rowStride, scale);
            var r5 = PackRow(s, 5, rowStride, scale);
            // Rows 0-3 of depth steps (0 | 4), (1 | 5), (2 | 6), (3 | 7); rows 4-5 of steps (0, 1 | 4, 5) and (2, 3 | 6, 7).
            RowOps.Transpose4x4Halves(r0, r1, r2, r3, out var c04, out var c15, out var c26, out var c37);
            var p01 = Avx.UnpackLow(r4, r5).AsDouble();
            var p23 = Avx.UnpackHigh(r4, r5).AsDouble();
            Step(c04.GetLower(), p01.GetLower(), false, dst);
            Step(c15.GetLower(), p01.GetLower(), true, dst + MR);
            Step(c26.GetLower(), p23.GetLower(), false, dst + 2 * MR);
            Step(c37.GetLower(), p23.GetLower(), true, dst + 3 * MR);
            Step(c04.GetUpper(), p01.GetUpper(), false, dst + 4 * MR);
            Step(c15.GetUpper(), p01.GetUpper(), true, dst + 5 * MR);
            Step(c26.GetUpper(), p23.GetUpper(), false, dst + 6 * MR);
            Step(c37.GetUpper(), p23.GetUpper(), true, dst + 7 * MR);
        }
        return kk;
    }

    /// <summary>Eight values of row <paramref name="r"/>, folded by its factor when <paramref name="scale"/> is given.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> PackRow(float* s, int r, long rowStride, double* scale)
    {
        var v = Vector256.Load(s + r * rowStride);
        if (scale == null) return v;
        var f = Vector256.Create(scale[r]);
        return Vector256.Create(Avx.ConvertToVector128Single(Avx.ConvertToVector256Double(v.GetLower()) * f),
                                Avx.ConvertToVector128Single(Avx.ConvertToVector256Double(v.GetUpper()) * f));
    }

    /// <summary>One depth step of a panel: rows 0-3, then rows 4-5 from the low or high half of <paramref name="pairs"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(Vector128<float> rows, Vector128<double> pairs, bool high, float* dst)
    {
        Vector128.Store(rows, dst);
        if (high) Sse2.StoreHigh((double*)(dst + 4), pairs);
        else Sse2.StoreLow((double*)(dst + 4), pairs);
    }

    /// <summary>
    /// <see cref="PackA"/> of a weight tensor. A fold whose elements are not computed yet is packed from its source
    /// weight and scale (row r of group g scaled by <c>rowScale(channelScale)[g·m + r]</c>, the channel scale itself when
    /// <paramref name="rowScale"/> is null), so a fused network's weights are read once and never copied before packing.
    /// </summary>
    public static float[] PackWeight(Tensor weight, int groups, int m, int k, long groupStride, long rowStride, long colStride,
                                     int threads, Func<double[], double[]>? rowScale = null)
    {
        if (weight.Pending is not PendingFold fold) return PackA(weight.RawFloat32, groups, m, k, groupStride, rowStride, colStride, null, threads);
        var scale = rowScale is null ? fold.ChannelScale : rowScale(fold.ChannelScale);
        return PackA(fold.Source, groups, m, k, groupStride, rowStride, colStride, scale, threads);
    }

    /// <summary>
    /// Runs <c>batch·groups</c> GEMMs of <paramref name="m"/>×<paramref name="k"/> by <paramref name="k"/>×<c>b.Columns</c>.
    /// <paramref name="packedA"/> comes from <see cref="PackA"/>; the epilogue's channel for row <c>r</c> of group <c>g</c>
    /// is <c>g·m + r</c>. An epilogue's <see cref="Epilogue.Residual"/> is read at the index each result is stored at in
    /// <c>c.Data</c>, so it must be exactly as long (checked here, before any pointer is taken).
    /// </summary>
    public static void Run(float[] packedA, int m, int k, BSource b, CTarget c, Epilogue ep, int batch, int groups, int threads)
    {
        if (ep.Residual is { } residual && residual.Length != c.Data.Length)
            throw new ArgumentException($"the residual has {residual.Length} elements, the output {c.Data.Length}: it must have the output's shape", nameof(ep));
        var n = b.Columns;
        if (n == 0 || m == 0) return;
        var nPanels = (n + NR - 1) / NR;
        var mPanels = Panels(m);
        var problems = (long)batch * groups;
        var (stripPanels, strips, mBlocks, mBlockPanels) = Split(m, k, n, problems, threads);
        var tasks = checked((int)(problems * strips * mBlocks));
        var aGroupStride = (long)mPanels * k * MR;

        var job = new Job(packedA, m, k, b, c, ep, groups, strips, stripPanels, mBlocks, mBlockPanels, nPanels, aGroupStride);
        Par.For(tasks, threads, (long)mBlockPanels * MR * k * stripPanels * NR, job.Execute);
    }

    /// <summary>
    /// How <see cref="Run"/> cuts the work: column strips whose packed depth chunk fits L2, then, if that leaves too few
    /// tasks for the cores, row blocks. Each row block packs its strip again, so callers weighing packing costs multiply
    /// them by <c>RowBlocks</c>.
    /// </summary>
    public static (int StripPanels, int Strips, int RowBlocks, int RowBlockPanels) Split(int m, int k, int n, long problems, int threads)
    {
        var nPanels = (n + NR - 1) / NR;
        var mPanels = Panels(m);
        var stripPanels = Math.Clamp(StripBytes / Math.Max(1, Math.Min(k, KC) * NR * sizeof(float)), 1, nPanels);
        // Enough tasks to keep every core busy with room for imbalance; split columns first, then rows.
        var want = threads <= 1 ? 1 : 4 * threads;
        while (stripPanels > 1 && problems * ((nPanels + stripPanels - 1) / stripPanels) < want) stripPanels = (stripPanels + 1) / 2;
        var strips = (nPanels + stripPanels - 1) / stripPanels;
        var mBlocks = 1;
        while (problems * strips * mBlocks < want && (mPanels + mBlocks * 2 - 1) / (mBlocks * 2) >= 2) mBlocks *= 2;
        var mBlockPanels = (mPanels + mBlocks - 1) / mBlocks;
        return (stripPanels, strips, (mPanels + mBlockPanels - 1) / mBlockPanels, mBlockPanels);
    }

    private sealed class Job(float[] packedA, int m, int k, BSource b, CTarget c, Epilogue ep, int groups, int strips, int stripPanels,
        int mBlocks, int mBlockPanels, int nPanels, long aGroupStride)
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Execute(int t)
        {
            var strip = t % strips; t /= strips;
            var mb = t % mBlocks; t /= mBlocks;
            var g = t % groups;
            var n = t / groups;
            var p0 = strip * stripPanels;
            var p1 = Math.Min(nPanels, p0 + stripPanels);
            var q0 = mb * mBlockPanels;
            var q1 = Math.Min(Panels(m), q0 + mBlockPanels);
            var chunk = Math.Min(k, KC);
            var panelFloats = chunk * NR;
            var pCount = p1 - p0;
            var buf = ArrayPool<float>.Shared.Rent(panelFloats * pCount);
            // Accumulator tiles for every (row panel, column panel) of the task when the depth is chunked.
            var acc = k > KC ? ArrayPool<float>.Shared.Rent((q1 - q0) * pCount * MR * NR) : null;
            try
            {
                fixed (float* aBase = packedA, bData = b.Data, cData = c.Data, bp = buf, accBase = acc)
                fixed (int* koff = b.KOff, colBase = b.ColBase, colMap = c.ColMap)
                fixed (float* epScale = ep.Scale, epShift = ep.Shift, resData = ep.Residual)
                {
                    var src = bData + b.Offset + n * b.ImageStride + g * b.GroupStride;
                    var cOffset = c.Offset + n * c.ImageStride + g * c.GroupStride;
                    var cBase = cData + cOffset;
                    // The residual's counterpart of cBase: same length as C (checked in Run), so every index valid in C is valid here.
                    var rBase = resData == null ? null : resData + cOffset;
                    var a = aBase + g * aGroupStride;
                    if (acc is null)
                    {
                        PackStrip(src, koff, colBase, p0, p1, k, bp, panelFloats);
                        var tile = stackalloc float[4 * MR * NR];
                        // Row panel outer, column panels inner: each A panel stays in L1 while the tile rows of C are
                        // written as six sequential streams (column-outer order scatters every tile over M rows).
                        for (var q = q0; q < q1; q++)
                        {
                            if (Vector512.IsHardwareAccelerated && q + 1 < q1)
                            {
                                PanelPair(a, q, p0, p1, bp, panelFloats, tile, cBase, rBase, colMap, g, epScale, epShift);
                                q++;
                                continue;
                            }
                            for (var p = p0; p < p1; p++) Panel(a, q, p, bp + (long)(p - p0) * panelFloats, tile, cBase, rBase, colMap, g);
                        }
                        return;
                    }
                    for (var k0 = 0; k0 < k; k0 += KC)
                    {
                        var kLen = Math.Min(KC, k - k0);
                        PackStrip(src, koff + k0, colBase, p0, p1, kLen, bp, panelFloats);
                        for (var q = q0; q < q1; q++)
                        {
                            var aChunk = a + (long)q * k * MR + (long)k0 * MR;
                            var tiles = accBase + (long)(q - q0) * pCount * MR * NR;
                            if (Vector512.IsHardwareAccelerated && q + 1 < q1)
                            {
                                // The next row panel's tiles follow this one's; its chunk is one whole A panel further.
                                ChunkPair(aChunk, aChunk + (long)k * MR, bp, panelFloats, kLen, tiles, tiles + (long)pCount * MR * NR, k0 > 0, p0, pCount);
                                q++;
                                continue;
                            }
                            for (var p = 0; p < pCount; p++)
                                MultiplyTile(aChunk, bp + (long)p * panelFloats, kLen, tiles + p * MR * NR, k0 > 0, b.Columns - (p0 + p) * NR);
                        }
                    }
                    for (var q = q0; q < q1; q++)
                    {
                        var m0 = q * MR;
                        var tiles = accBase + (long)(q - q0) * pCount * MR * NR;
                        for (var p = p0; p < p1; p++)
                        {
                            var v0 = p * NR;
                            Store(tiles + (p - p0) * MR * NR, Math.Min(MR, m - m0), Math.Min(NR, b.Columns - v0), v0, m0, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
                        }
                    }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(buf);
                if (acc is not null) ArrayPool<float>.Shared.Return(acc);
            }
        }

        /// <summary>
        /// The tile of row panel <paramref name="q"/> and column panel <paramref name="p"/> (packed at
        /// <paramref name="bPanel"/>) over the whole depth, written to C through the epilogue (<paramref name="rBase"/>: the
        /// residual's counterpart of <paramref name="cBase"/>, or null).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Panel(float* a, int q, int p, float* bPanel, float* tile, float* cBase, float* rBase, int* colMap, int g)
        {
            var m0 = q * MR;
            var v0 = p * NR;
            var nc = Math.Min(NR, b.Columns - v0);
            var mr = Math.Min(MR, m - m0);
            MultiplyTile(a + (long)q * k * MR, bPanel, k, tile, false, nc);
            Store(tile, mr, nc, v0, m0, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
        }

        /// <summary>
        /// Row panels <paramref name="q"/> and <c>q+1</c> against column panels <c>[p0, p1)</c>: 12×32 blocks on the
        /// AVX-512 kernel wherever the second column panel has more than <c>NR/2</c> valid columns (where the 256-bit path
        /// runs its full kernel too, so the bits agree), single tiles elsewhere.
        /// </summary>
        private void PanelPair(float* a, int q, int p0, int p1, float* bp, int panelFloats, float* tile, float* cBase, float* rBase, int* colMap, int g,
                               float* epScale, float* epShift)
        {
            // Twelve full rows whose 32 columns are two runs of C take the epilogue in registers.
            var direct = (q + 2) * MR <= m && !Epilogue.CallsOut(ep.Activation);
            var m0 = q * MR;
            var aPanel = a + (long)q * k * MR;
            for (var p = p0; p < p1; p++)
            {
                var bPanel = bp + (long)(p - p0) * panelFloats;
                var v0 = p * NR;
                var nc1 = p + 1 < p1 ? Math.Min(NR, b.Columns - v0 - NR) : 0;
                if (nc1 <= NR / 2)
                {
                    Panel(a, q, p, bPanel, tile, cBase, rBase, colMap, g);
                    Panel(a, q + 1, p, bPanel, tile, cBase, rBase, colMap, g);
                    continue;
                }
                if (direct)
                {
                    var d0 = DirectTarget(NR, v0, m0, cBase, c.RowStride, c.ColStride, colMap);
                    var d1 = DirectTarget(nc1, v0 + NR, m0, cBase, c.RowStride, c.ColStride, colMap);
                    if (d0 != null && d1 != null)
                    {
                        var channel = g * m + m0;
                        GemmKernel512.Kernel(aPanel, aPanel + (long)k * MR, bPanel, bPanel + panelFloats, k, null, null, null, null, false, d0, d1, c.RowStride,
                            epScale == null ? null : epScale + channel, epShift == null ? null : epShift + channel, ep.Activation,
                            rBase == null ? null : rBase + (d0 - cBase), rBase == null ? null : rBase + (d1 - cBase));
                        p++;
                        continue;
                    }
                }
                const int t = MR * NR;
                GemmKernel512.Kernel(aPanel, aPanel + (long)k * MR, bPanel, bPanel + panelFloats, k, tile, tile + t, tile + 2 * t, tile + 3 * t, false);
                var mr0 = Math.Min(MR, m - m0);
                var mr1 = Math.Min(MR, m - m0 - MR);
                Store(tile, mr0, NR, v0, m0, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
                Store(tile + t, mr0, nc1, v0 + NR, m0, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
                Store(tile + 2 * t, mr1, NR, v0, m0 + MR, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
                Store(tile + 3 * t, mr1, nc1, v0 + NR, m0 + MR, g * m, cBase, rBase, c.RowStride, c.ColStride, colMap, ep);
                p++;
            }
        }

        /// <summary>
        /// One depth chunk of two row panels (A chunks <paramref name="a0"/>, <paramref name="a1"/>; accumulator tiles
        /// <paramref name="tiles0"/>, <paramref name="tiles1"/>) against the strip's <paramref name="pCount"/> column
        /// panels, on the AVX-512 kernel where <see cref="PanelPair"/> would use it.
        /// </summary>
        private void ChunkPair(float* a0, float* a1, float* bp, int panelFloats, int kLen, float* tiles0, float* tiles1, bool accumulate, int p0, int pCount)
        {
            const int t = MR * NR;
            for (var p = 0; p < pCount; p++)
            {
                var bPanel = bp + (long)p * panelFloats;
                var valid = b.Columns - (p0 + p) * NR;
                if (p + 1 < pCount && valid - NR > NR / 2)
                {
                    GemmKernel512.Kernel(a0, a1, bPanel, bPanel + panelFloats, kLen, tiles0 + p * t, tiles0 + (p + 1) * t,
                        tiles1 + p * t, tiles1 + (p + 1) * t, accumulate);
                    p++;
                    continue;
                }
                MultiplyTile(a0, bPanel, kLen, tiles0 + p * t, accumulate, valid);
                MultiplyTile(a1, bPanel, kLen, tiles1 + p * t, accumulate, valid);
            }
        }

        /// <summary>Packs the strip's column panels <c>[p0, p1)</c> over <paramref name="kLen"/> depth steps into <paramref name="bp"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void PackStrip(float* src, int* koff, int* colBase, int p0, int p1, int kLen, float* bp, int panelFloats)
        {
            for (var p = p0; p < p1; p++)
            {
                var v0 = p * NR;
                PackPanel(src, koff, colBase, v0, Math.Min(NR, b.Columns - v0), kLen, bp + (long)(p - p0) * panelFloats);
            }
        }
    }

    /// <summary>One tile product: the column kernel for one or two valid columns, the half-width kernel up to <c>NR/2</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyTile(float* a, float* b, int k, float* tile, bool accumulate, int validColumns)
    {
        if (validColumns <= 2 && Avx.IsSupported) KernelColumns(a, b, k, tile, accumulate, validColumns);
        else if (validColumns <= NR / 2) KernelHalf(a, b, k, tile, accumulate);
        else Kernel(a, b, k, tile, accumulate);
    }

    /// <summary>
    /// The variant for a last column panel with one or two valid columns (a 7×7 map has 49 = 3·16 + 1 columns): a
    /// column's six rows are one vector, so a depth step costs one FMA per column instead of the half kernel's six.
    /// Four interleaved partial sums per column hide the FMA latency; they are added pairwise at the end, so the bits
    /// differ from the other kernels' single chain by rounding only (the choice depends on the shape, never on threads).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelColumns(float* a, float* b, int k, float* tile, bool accumulate, int columns)
    {
        var rows = Epilogue.TailMask(MR);
        for (var j = 0; j < columns; j++)
        {
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            if (accumulate)
                s0 = Vector256.Create(tile[j], tile[NR + j], tile[2 * NR + j], tile[3 * NR + j], tile[4 * NR + j], tile[5 * NR + j], 0f, 0f);
            float* ap = a, bp = b + j;
            var p = 0;
            for (; p <= k - 4; p += 4, ap += 4 * MR, bp += 4 * NR)
            {
                s0 = Vector256.FusedMultiplyAdd(Avx.MaskLoad(ap, rows), Vector256.Create(bp[0]), s0);
                s1 = Vector256.FusedMultiplyAdd(Avx.MaskLoad(ap + MR, rows), Vector256.Create(bp[NR]), s1);
                s2 = Vector256.FusedMultiplyAdd(Avx.MaskLoad(ap + 2 * MR, rows), Vector256.Create(bp[2 * NR]), s2);
                s3 = Vector256.FusedMultiplyAdd(Avx.MaskLoad(ap + 3 * MR, rows), Vector256.Create(bp[3 * NR]), s3);
            }
            for (; p < k; p++, ap += MR, bp += NR) s0 = Vector256.FusedMultiplyAdd(Avx.MaskLoad(ap, rows), Vector256.Create(bp[0]), s0);
            var sum = (s0 + s1) + (s2 + s3);
            for (var r = 0; r < MR; r++) tile[r * NR + j] = sum.GetElement(r);
        }
    }

    /// <summary>Packs columns <c>[v0, v0+nc)</c> of B into one K×NR panel (zero beyond <paramref name="nc"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackPanel(float* src, int* koff, int* colBase, int v0, int nc, int k, float* dst)
    {
        if (colBase == null)
        {
            var s = src + v0;
            if (nc == NR)
            {
                for (var kk = 0; kk < k; kk++, dst += NR)
                {
                    var p = s + koff[kk];
                    Vector256.Store(Vector256.Load(p), dst);
                    Vector256.Store(Vector256.Load(p + 8), dst + 8);
                }
            }
            else
            {
                for (var kk = 0; kk < k; kk++, dst += NR)
                {
                    var p = s + koff[kk];
                    var j = 0;
                    for (; j < nc; j++) dst[j] = p[j];
                    for (; j < NR; j++) dst[j] = 0f;
                }
            }
        }
        else
        {
            var cb = colBase + v0;
            if (nc == NR && Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx2.IsSupported)
            {
                var i0 = Vector256.Load(cb);
                var i1 = Vector256.Load(cb + 8);
                for (var kk = 0; kk < k; kk++, dst += NR)
                {
                    var p = src + koff[kk];
                    Vector256.Store(System.Runtime.Intrinsics.X86.Avx2.GatherVector256(p, i0, 4), dst);
                    Vector256.Store(System.Runtime.Intrinsics.X86.Avx2.GatherVector256(p, i1, 4), dst + 8);
                }
            }
            else
            {
                for (var kk = 0; kk < k; kk++, dst += NR)
                {
                    var p = src + koff[kk];
                    var j = 0;
                    for (; j < nc; j++) dst[j] = p[cb[j]];
                    for (; j < NR; j++) dst[j] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// The output column where tile columns <c>[v0, v0+nc)</c> start when they are one run of consecutive output columns
    /// (unit column stride, no Toeplitz column dropped inside), or -1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RunStart(int nc, int v0, int cs, int* colMap)
    {
        if (cs != 1) return -1;
        if (colMap == null) return v0;
        return colMap[v0] >= 0 && colMap[v0 + nc - 1] == colMap[v0] + nc - 1 ? colMap[v0] : -1;
    }

    /// <summary>Where a full tile's first row starts in C when its 16 columns are one run (<see cref="RunStart"/>), or null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* DirectTarget(int nc, int v0, int m0, float* c, int rs, int cs, int* colMap)
    {
        var first = nc == NR ? RunStart(nc, v0, cs, colMap) : -1;
        return first < 0 ? null : c + (long)m0 * rs + first;
    }

    /// <summary>
    /// The 6×16 micro-kernel: <c>tile = A-panel · B-panel</c> over <paramref name="k"/> depth steps in 12 vector
    /// accumulators, starting from zero or, when <paramref name="accumulate"/>, from the tile (the previous chunk).
    /// The epilogue runs afterwards from the tile (<see cref="Store"/>), never in here: the JIT keeps a vector that is
    /// live across a call in a stack slot, written at every definition, so an epilogue after the loop (SiLU calls
    /// <c>Exp</c>) made it store and reload all 12 accumulators on every depth step (seen in the JIT's disassembly);
    /// one tile store and reload per product costs far less.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel(float* a, float* b, int k, float* tile, bool accumulate)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        if (accumulate)
        {
            c00 = Vector256.Load(tile); c01 = Vector256.Load(tile + 8);
            c10 = Vector256.Load(tile + 16); c11 = Vector256.Load(tile + 24);
            c20 = Vector256.Load(tile + 32); c21 = Vector256.Load(tile + 40);
            c30 = Vector256.Load(tile + 48); c31 = Vector256.Load(tile + 56);
            c40 = Vector256.Load(tile + 64); c41 = Vector256.Load(tile + 72);
            c50 = Vector256.Load(tile + 80); c51 = Vector256.Load(tile + 88);
        }
        for (var p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(a0, b0, c00); c01 = Vector256.FusedMultiplyAdd(a0, b1, c01);
            var a1 = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(a1, b0, c10); c11 = Vector256.FusedMultiplyAdd(a1, b1, c11);
            var a2 = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(a2, b0, c20); c21 = Vector256.FusedMultiplyAdd(a2, b1, c21);
            var a3 = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(a3, b0, c30); c31 = Vector256.FusedMultiplyAdd(a3, b1, c31);
            var a4 = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(a4, b0, c40); c41 = Vector256.FusedMultiplyAdd(a4, b1, c41);
            var a5 = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(a5, b0, c50); c51 = Vector256.FusedMultiplyAdd(a5, b1, c51);
            a += MR;
            b += NR;
        }
        Vector256.Store(c00, tile); Vector256.Store(c01, tile + 8);
        Vector256.Store(c10, tile + 16); Vector256.Store(c11, tile + 24);
        Vector256.Store(c20, tile + 32); Vector256.Store(c21, tile + 40);
        Vector256.Store(c30, tile + 48); Vector256.Store(c31, tile + 56);
        Vector256.Store(c40, tile + 64); Vector256.Store(c41, tile + 72);
        Vector256.Store(c50, tile + 80); Vector256.Store(c51, tile + 88);
    }

    /// <summary>
    /// One 16-value tile row through the epilogue of its channel into <paramref name="dst"/>, with <paramref name="act"/>
    /// and, when <paramref name="res"/> is not null, the 16 residual values there added before it: one 512-bit vector
    /// where the hardware has them, two 256-bit ones otherwise (the same bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row(float* src, float* dst, int channel, Epilogue ep, Act act, float* res)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            var ws = Vector512.Create(ep.Scale is null ? 1f : ep.Scale[channel]);
            var wb = Vector512.Create(ep.Shift is null ? 0f : ep.Shift[channel]);
            Vector512.Store(Epilogue.Apply(Vector512.Load(src), ws, wb, ep.Scale is not null, res, act), dst);
            return;
        }
        var lo = Vector256.Load(src);
        var hi = Vector256.Load(src + 8);
        var vs = Vector256.Create(ep.Scale is null ? 1f : ep.Scale[channel]);
        var vb = Vector256.Create(ep.Shift is null ? 0f : ep.Shift[channel]);
        Vector256.Store(Epilogue.Apply(lo, vs, vb, ep.Scale is not null, res, act), dst);
        Vector256.Store(Epilogue.Apply(hi, vs, vb, ep.Scale is not null, res == null ? null : res + 8, act), dst + 8);
    }

    /// <summary>
    /// The 6×8 variant for a last column panel with at most 8 valid columns (a 7×7 map has 49 = 3·16 + 1): half the
    /// work of the full kernel. It reads the first half of each packed B row and fills the first half of each tile row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelHalf(float* a, float* b, int k, float* tile, bool accumulate)
    {
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        if (accumulate)
        {
            c0 = Vector256.Load(tile); c1 = Vector256.Load(tile + 16); c2 = Vector256.Load(tile + 32);
            c3 = Vector256.Load(tile + 48); c4 = Vector256.Load(tile + 64); c5 = Vector256.Load(tile + 80);
        }
        for (var p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(b);
            c0 = Vector256.FusedMultiplyAdd(Vector256.Create(a[0]), b0, c0);
            c1 = Vector256.FusedMultiplyAdd(Vector256.Create(a[1]), b0, c1);
            c2 = Vector256.FusedMultiplyAdd(Vector256.Create(a[2]), b0, c2);
            c3 = Vector256.FusedMultiplyAdd(Vector256.Create(a[3]), b0, c3);
            c4 = Vector256.FusedMultiplyAdd(Vector256.Create(a[4]), b0, c4);
            c5 = Vector256.FusedMultiplyAdd(Vector256.Create(a[5]), b0, c5);
            a += MR;
            b += NR;
        }
        Vector256.Store(c0, tile); Vector256.Store(c1, tile + 16); Vector256.Store(c2, tile + 32);
        Vector256.Store(c3, tile + 48); Vector256.Store(c4, tile + 64); Vector256.Store(c5, tile + 80);
    }

    /// <summary>Columns the kernels compute for <paramref name="n"/> output columns (full panels, a half panel for a short
    /// remainder; one or two columns cost about two, see <see cref="KernelColumns"/>).</summary>
    public static long ComputedColumns(long n)
    {
        var rem = n % NR;
        return n - rem + (rem == 0 ? 0 : rem <= 2 ? 2 : rem <= NR / 2 ? NR / 2 : NR);
    }

    /// <summary>
    /// Writes the valid <paramref name="mr"/>×<paramref name="nc"/> part of a tile through the epilogue: the epilogue runs
    /// on whole tile rows in vectors (lanes past <paramref name="nc"/> are never stored), then each run of consecutive
    /// output columns is copied out (one run unless a Toeplitz view drops columns inside the tile). With a residual
    /// (<paramref name="res"/>, the residual's counterpart of <paramref name="c"/>) a tile row written in place keeps
    /// <c>x·scale + shift</c>, and the copy-out adds the residual and applies the activation, so no value is activated twice.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Store(float* tile, int mr, int nc, int v0, int m0, int channel0, float* c, float* res, int rs, int cs, int* colMap, Epilogue ep)
    {
        // A full tile bound for one run goes through the epilogue straight into C, without writing the tile back first;
        // otherwise in place, then copied out.
        var direct = DirectTarget(nc, v0, m0, c, rs, cs, colMap);
        var act = ep.Activation;
        if (direct != null)
        {
            for (var r = 0; r < mr; r++)
            {
                var d = direct + (long)r * rs;
                Row(tile + r * NR, d, channel0 + m0 + r, ep, act, res == null ? null : res + (d - c));
            }
            return;
        }
        for (var r = 0; r < mr; r++)
        {
            var t = tile + r * NR;
            Row(t, t, channel0 + m0 + r, ep, res == null ? act : Act.None, null);
        }
        // What the copy-out still owes each value: the residual and the activation, or nothing.
        var owed = res == null ? Act.None : act;
        if (cs != 1)
        {
            // A transposed destination (Linear's [rows, features]): column by column, so that each column's values, a
            // run of consecutive features when rs = 1, are written together instead of one cache line per value in turn.
            for (var j = 0; j < nc; j++)
            {
                var col = colMap == null ? v0 + j : colMap[v0 + j];
                if (col < 0) continue;
                var at0 = (long)m0 * rs + (long)col * cs;
                for (var r = 0; r < mr; r++)
                {
                    var at = at0 + (long)r * rs;
                    c[at] = res == null ? tile[r * NR + j] : Epilogue.Activate(tile[r * NR + j] + res[at], owed);
                }
            }
            return;
        }
        // One run of consecutive output columns per row (always so without a column map), starting at column `first`.
        var first = RunStart(nc, v0, cs, colMap);
        if (first >= 0)
        {
            for (var r = 0; r < mr; r++)
            {
                var at = (long)(m0 + r) * rs + first;
                CopyRun(tile + r * NR, c + at, res == null ? null : res + at, nc, owed);
            }
            return;
        }
        for (var j = 0; j < nc;)
        {
            if (colMap[v0 + j] < 0) { j++; continue; }
            var start = j;
            while (j + 1 < nc && colMap[v0 + j + 1] == colMap[v0 + j] + 1) j++;
            j++;
            var dst = colMap[v0 + start];
            for (var r = 0; r < mr; r++)
            {
                var at = (long)(m0 + r) * rs + dst;
                CopyRun(tile + r * NR + start, c + at, res == null ? null : res + at, j - start, owed);
            }
        }
    }

    /// <summary>
    /// Copies a run of at most <see cref="NR"/> values (a full tile row is written by the epilogue directly), or with a
    /// residual run <paramref name="res"/> stores <c>act(src + res)</c>, the add and activation the tile still owes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRun(float* src, float* dst, float* res, int n, Act act)
    {
        var i = 0;
        if (res == null)
        {
            if (n >= 8) { Vector256.Store(Vector256.Load(src), dst); i = 8; }
            for (; i < n; i++) dst[i] = src[i];
            return;
        }
        if (n >= 8) { Vector256.Store(Epilogue.Activate(Vector256.Load(src) + Vector256.Load(res), act), dst); i = 8; }
        for (; i < n; i++) dst[i] = Epilogue.Activate(src[i] + res[i], act);
    }
}
