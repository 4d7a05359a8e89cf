using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Convolution and transposed convolution of every rank on batched inputs, with an epilogue fused into the write-out.
/// Forward convolutions lay the input out once (padded with zeros or the padding mode, split by stride phase; see
/// <see cref="ConvGeometry"/>) and then run a valid unit-stride convolution over it: a grouped GEMM whose B operand is
/// read straight from the layout (a Toeplitz view, so 1×1 convolutions are a plain GEMM; a gather when the view would
/// waste too many columns), or a direct vectorised kernel when each group has one input channel (depthwise). 3×3
/// unit-stride convolutions with enough channels go to <see cref="Winograd"/>. Transposed convolutions are a GEMM into
/// columns followed by a scatter (col2im).
/// </summary>
internal static unsafe class ConvKernels
{
    private const int PackConv = 0;
    private const int PackTransposed = 1;

    /// <summary>
    /// The convolution of a batched input <c>[N, C, *spatial]</c> (checked by the caller) through <paramref name="ep"/>.
    /// An epilogue with a residual needs a convolution that <see cref="TakesResidual"/> and a residual as long as the output.
    /// </summary>
    public static Tensor Forward(Conv conv, Tensor input, Epilogue ep, Pass pass)
    {
        var geo = ConvGeometry.Create(conv, input.Shape);
        if (ep.Residual is { } residual)
        {
            if (!TakesResidual(geo)) throw new ArgumentException("this convolution's path (depthwise or transposed) takes no residual in its epilogue", nameof(ep));
            if (residual.Length != (long)geo.Batch * geo.OutChannels * geo.OutVolume)
                throw new ArgumentException($"the residual has {residual.Length} elements, the output {(long)geo.Batch * geo.OutChannels * geo.OutVolume}", nameof(ep));
        }
        return geo.Transposed ? Transposed(conv, geo, input, ep, pass) : Direct(conv, geo, input, ep, pass);
    }

    /// <summary>
    /// Whether the convolution's path adds an <see cref="Epilogue.Residual"/> as it stores: the GEMM paths (1×1, Toeplitz,
    /// gathered columns) and Winograd do. Depthwise and transposed convolutions write their planes through
    /// <see cref="Epilogue.ApplyRun"/>, so their callers add a residual in a separate pass.
    /// </summary>
    public static bool TakesResidual(ConvGeometry geo) => !geo.Transposed && !IsDepthwise(geo);

    /// <summary>One input channel per group over several groups: the direct depthwise kernel's convolutions.</summary>
    private static bool IsDepthwise(ConvGeometry geo) => geo.InGroupChannels == 1 && geo.Groups > 1;

    /// <summary>How a forward convolution's GEMM reads its B operand.</summary>
    private enum Plan
    {
        /// <summary>Toeplitz view of the phase layout (dropped columns past each output row).</summary>
        Toeplitz,
        /// <summary>Gathered columns of the phase layout.</summary>
        GatherLayout,
        /// <summary>Gathered columns of the input as given (no padding: the layout would only split phases).</summary>
        GatherInput,
    }

    /// <summary>
    /// The cheapest plan by a cycle estimate: every computed column costs its rows' FMAs (rows/16 vector FMAs per depth
    /// step) plus its packing, repeated for each row block the GEMM splits into (an eighth of a cycle per element for a
    /// vector copy, about one for a gather), and building the layout costs about half a cycle per element written.
    /// </summary>
    private static Plan ChoosePlan(ConvGeometry geo, int threads)
    {
        var kg = geo.InGroupChannels * geo.KernelVolume;
        var k = (double)kg * geo.Groups;
        var rows = Gemm.Panels(geo.OutGroupChannels) * Gemm.MR / 16.0;
        var problems = (long)geo.Batch * geo.Groups;
        var layout = geo.NeedsLayout ? 0.5 * geo.InChannels * geo.LayoutPlane : 0;
        double Cost(int columns, double pack)
            => k * Gemm.ComputedColumns(columns) * (rows + pack * Gemm.Split(geo.OutGroupChannels, kg, columns, problems, threads).RowBlocks);
        var toeplitz = Cost(ToeplitzColumns(geo), 0.125) + layout;
        var gather = Cost(geo.OutVolume, 1.0);
        if (!geo.NeedsPadding && geo.NeedsLayout && gather < toeplitz) return Plan.GatherInput;
        return toeplitz <= gather + layout ? Plan.Toeplitz : Plan.GatherLayout;
    }

    private static int ToeplitzColumns(ConvGeometry geo) => ((geo.Out[0] - 1) * geo.Sub[1] + (geo.Out[1] - 1)) * geo.Sub[2] + geo.Out[2];

    private static Tensor Direct(Conv conv, ConvGeometry geo, Tensor input, Epilogue ep, Pass pass)
    {
        if (Winograd.Applies(geo) && Winograd.TryForward(conv, geo, input, ep, pass) is { } fast) return fast;
        var threads = pass.Threads;
        var output = pass.Output(checked(geo.Batch * geo.OutChannels * geo.OutVolume));
        var depthwise = IsDepthwise(geo);
        var plan = depthwise ? Plan.Toeplitz : ChoosePlan(geo, threads);
        // A depthwise plane is read by its own output plane only (no channel multiplier): lay it out inside that task,
        // into a buffer that stays in L2, instead of writing the whole laid-out input to memory and reading it back.
        var layoutPerPlane = depthwise && geo.NeedsLayout && geo.OutGroupChannels == 1;
        float[]? rented = null;
        try
        {
            var src = input.RawFloat32;
            if (geo.NeedsLayout && plan != Plan.GatherInput && !layoutPerPlane)
            {
                rented = ArrayPool<float>.Shared.Rent(checked(geo.Batch * geo.InChannels * geo.LayoutPlane));
                BuildLayout(input.RawFloat32, rented, geo, threads);
                src = rented;
            }
            if (depthwise) Depthwise(conv.Weight.RawFloat32, src, output, geo, ep, threads, layoutPerPlane);
            else ConvGemm(conv, geo, plan, src, output, ep, pass);
        }
        finally
        {
            if (rented is not null) ArrayPool<float>.Shared.Return(rented);
        }
        return Tensor.Adopt(output, geo.OutputShape);
    }

    /// <summary>Writes every channel in the phase layout (padding filled per the padding mode; past the padded extent, zeros).</summary>
    private static void BuildLayout(float[] src, float[] dst, ConvGeometry geo, int threads)
    {
        var planes = geo.Batch * geo.InChannels;
        Par.For(planes, threads, geo.LayoutPlane, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            fixed (float* s0 = src, d0 = dst)
                LayoutPlane(s0 + (long)plane * geo.InVolume, d0 + (long)plane * geo.LayoutPlane, geo);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void LayoutPlane(float* src, float* dst, ConvGeometry geo)
    {
        int[] n = geo.In, p = geo.Padded, l = geo.PadLeft, st = geo.Stride, sub = geo.Sub;
        var mode = geo.Mode;
        var rowLen = sub[2] * st[2];
        // A padded row before its split into width phases (only needed for a strided width).
        var scratch = st[2] == 1 ? null : ArrayPool<float>.Shared.Rent(rowLen);
        try
        {
            fixed (float* padded = scratch)
                for (var a = 0; a < st[0]; a++)
                    for (var b = 0; b < st[1]; b++)
                    {
                        var phase = dst + (long)((a * st[1] + b) * st[2]) * geo.SubVolume;
                        for (var i = 0; i < sub[0]; i++)
                        {
                            var pd = i * st[0] + a;
                            var sd = pd < p[0] ? ConvGeometry.SourceIndex(pd - l[0], n[0], mode) : -1;
                            for (var j = 0; j < sub[1]; j++)
                            {
                                var ph = j * st[1] + b;
                                var sh = ph < p[1] ? ConvGeometry.SourceIndex(ph - l[1], n[1], mode) : -1;
                                var row = phase + ((long)i * sub[1] + j) * sub[2];
                                if (sd < 0 || sh < 0)
                                {
                                    for (var c = 0; c < st[2]; c++) new Span<float>(row + (long)c * geo.SubVolume, sub[2]).Clear();
                                    continue;
                                }
                                var srow = src + ((long)sd * n[1] + sh) * n[2];
                                if (st[2] == 1) PadRow(srow, row, n[2], p[2], l[2], sub[2], mode);
                                else
                                {
                                    PadRow(srow, padded, n[2], p[2], l[2], rowLen, mode);
                                    RowOps.Deinterleave(padded, row, sub[2], st[2], geo.SubVolume);
                                }
                            }
                        }
                    }
        }
        finally
        {
            if (scratch is not null) ArrayPool<float>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// <paramref name="dst"/>[q] = padded input column q for q &lt; <paramref name="len"/>: the left border and the right
    /// border per the padding mode, the row itself in between, zeros past the padded width.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PadRow(float* srow, float* dst, int n, int padded, int left, int len, PaddingMode mode)
    {
        for (var q = 0; q < left; q++)
        {
            var sw = ConvGeometry.SourceIndex(q - left, n, mode);
            dst[q] = sw < 0 ? 0f : srow[sw];
        }
        var copy = Math.Min(n, len - left);
        new ReadOnlySpan<float>(srow, copy).CopyTo(new Span<float>(dst + left, copy));
        for (var q = left + copy; q < len; q++)
        {
            var sw = q < padded ? ConvGeometry.SourceIndex(q - left, n, mode) : -1;
            dst[q] = sw < 0 ? 0f : srow[sw];
        }
    }

    /// <summary>
    /// Valid convolution as one GEMM per (image, group), B read per <paramref name="plan"/>: column v of the Toeplitz
    /// view is sub-grid position v of the phase layout (positions past an output row's end are computed and dropped);
    /// the gather plans read exactly the output positions.
    /// </summary>
    private static void ConvGemm(Conv conv, ConvGeometry geo, Plan plan, float[] src, float[] output, Epilogue ep, Pass pass)
    {
        var threads = pass.Threads;
        int cinG = geo.InGroupChannels, coutG = geo.OutGroupChannels, kvol = geo.KernelVolume, k = cinG * kvol;
        var weight = conv.Weight;
        var packedA = pass.Pack(weight, (PackConv, geo.Groups, 0),
            () => Gemm.PackWeight(weight, geo.Groups, coutG, k, (long)coutG * k, k, 1, threads));

        int[] kern = geo.Kernel, sub = geo.Sub, o = geo.Out, n = geo.In, s = geo.Stride, dil = geo.Dilation;
        var raw = plan == Plan.GatherInput;
        var plane = raw ? geo.InVolume : geo.LayoutPlane;
        var koff = new int[k];
        for (int ci = 0, i = 0; ci < cinG; ci++)
            for (var kd = 0; kd < kern[0]; kd++)
                for (var kh = 0; kh < kern[1]; kh++)
                    for (var kw = 0; kw < kern[2]; kw++)
                        koff[i++] = ci * plane + (raw ? (kd * dil[0] * n[1] + kh * dil[1]) * n[2] + kw * dil[2] : geo.TapOffset(kd, kh, kw));

        var outVol = geo.OutVolume;
        int columns;
        int[]? colBase = null, colMap = null;
        if (plan == Plan.Toeplitz)
        {
            columns = ToeplitzColumns(geo);
            if (sub[1] != o[1] || sub[2] != o[2])
            {
                colMap = new int[columns];
                for (var v = 0; v < columns; v++)
                {
                    var od = v / (sub[1] * sub[2]);
                    var r = v - od * sub[1] * sub[2];
                    var oh = r / sub[2];
                    var ow = r - oh * sub[2];
                    colMap[v] = oh < o[1] && ow < o[2] ? (od * o[1] + oh) * o[2] + ow : -1;
                }
            }
        }
        else
        {
            columns = outVol;
            colBase = new int[columns];
            for (int od = 0, j = 0; od < o[0]; od++)
                for (var oh = 0; oh < o[1]; oh++)
                    for (var ow = 0; ow < o[2]; ow++)
                        colBase[j++] = raw ? (od * s[0] * n[1] + oh * s[1]) * n[2] + ow * s[2] : (od * sub[1] + oh) * sub[2] + ow;
        }
        var b = new BSource(src, 0, (long)geo.InChannels * plane, (long)cinG * plane, koff, colBase, columns);
        var c = new CTarget(output, 0, (long)geo.OutChannels * outVol, (long)coutG * outVol, outVol, 1, colMap);
        Gemm.Run(packedA, coutG, k, b, c, ep, geo.Batch, geo.Groups, threads);
    }

    /// <summary>
    /// One input channel per group (depthwise, possibly with a channel multiplier): a direct kernel per output plane.
    /// <paramref name="src"/> is the phase layout, or with <paramref name="layoutPerPlane"/> the raw input, each plane of which
    /// is laid out by the task that reads it.
    /// </summary>
    private static void Depthwise(float[] weight, float[] src, float[] output, ConvGeometry geo, Epilogue ep, int threads, bool layoutPerPlane)
    {
        var coutG = geo.OutGroupChannels;
        var planes = geo.Batch * geo.OutChannels;
        var taps = new int[geo.KernelVolume];
        for (int kd = 0, t = 0; kd < geo.Kernel[0]; kd++)
            for (var kh = 0; kh < geo.Kernel[1]; kh++)
                for (var kw = 0; kw < geo.Kernel[2]; kw++)
                    taps[t++] = geo.TapOffset(kd, kh, kw);
        var columns = ToeplitzColumns(geo);
        Par.For(planes, threads, (long)geo.OutVolume * geo.KernelVolume, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int idx) =>
        {
            var n = idx / geo.OutChannels;
            var co = idx - n * geo.OutChannels;
            var ci = co / coutG;
            var (scale, shift) = ep.At(co);
            var acc = ArrayPool<float>.Shared.Rent(columns);
            var laid = layoutPerPlane ? ArrayPool<float>.Shared.Rent(geo.LayoutPlane) : null;
            try
            {
                fixed (float* w = weight, s = src, d = output, tmp = acc, lay = laid)
                fixed (int* tapOff = taps)
                {
                    var plane0 = (long)n * geo.InChannels + ci;
                    var inPlane = s + plane0 * geo.LayoutPlane;
                    if (layoutPerPlane)
                    {
                        LayoutPlane(s + plane0 * geo.InVolume, lay, geo);
                        inPlane = lay;
                    }
                    DepthwisePlane(inPlane, w + (long)co * geo.KernelVolume, tapOff, geo.KernelVolume, tmp, columns);
                    // Only the Toeplitz columns inside each output row are written, through the epilogue: row by row, or
                    // for rows narrower than a 512-bit vector (7- and 14-wide maps, all masked tail row by row) over the
                    // whole run at once and then copied out. The same operations per value either way, so the same bits.
                    int[] sub = geo.Sub, o = geo.Out;
                    var plane = d + (long)idx * geo.OutVolume;
                    var narrow = o[2] < Vector512<float>.Count;
                    if (narrow) Epilogue.ApplyRun(tmp, tmp, columns, scale, shift, ep.Scale is not null, ep.Activation);
                    for (var od = 0; od < o[0]; od++)
                        for (var oh = 0; oh < o[1]; oh++)
                        {
                            var from = tmp + ((long)od * sub[1] + oh) * sub[2];
                            var to = plane + ((long)od * o[1] + oh) * o[2];
                            if (narrow) new ReadOnlySpan<float>(from, o[2]).CopyTo(new Span<float>(to, o[2]));
                            else Epilogue.ApplyRun(from, to, o[2], scale, shift, ep.Scale is not null, ep.Activation);
                        }
                }
            }
            finally
            {
                ArrayPool<float>.Shared.Return(acc);
                if (laid is not null) ArrayPool<float>.Shared.Return(laid);
            }
        });
    }

    /// <summary>
    /// One channel as a Toeplitz view of its phase layout: column v is sub-grid position v, and tap t reads the
    /// contiguous run starting at <c>tapOff[t]</c>, so any stride and any output width vectorise (columns past an
    /// output row's end are computed and dropped by the caller). Four vectors in flight hide the FMA latency.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DepthwisePlane(float* src, float* w, int* tapOff, int taps, float* acc, int columns)
    {
        var v = 0;
        // Four vectors in flight: 64 columns in zmm vectors where AVX-512 runs, then 32 in ymm. Each column is the same
        // FMA chain over the taps on either width, so the bits do not depend on the instruction set.
        if (Vector512.IsHardwareAccelerated)
            for (; v <= columns - 4 * Lanes512.Count; v += 4 * Lanes512.Count) DepthwiseBlock<Lanes512>(src + v, w, tapOff, taps, acc + v);
        for (; v <= columns - 4 * Lanes256.Count; v += 4 * Lanes256.Count) DepthwiseBlock<Lanes256>(src + v, w, tapOff, taps, acc + v);
        for (; v <= columns - 8; v += 8)
        {
            var a0 = Vector256<float>.Zero;
            var b = src + v;
            for (var t = 0; t < taps; t++) a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[t]), Vector256.Load(b + tapOff[t]), a0);
            Vector256.Store(a0, acc + v);
        }
        if (v < columns && columns >= 8)
        {
            // The last few columns as one vector ending at the last column: it recomputes some columns of the block
            // before (same bits) instead of running the taps once per column in scalar code.
            v = columns - 8;
            var a0 = Vector256<float>.Zero;
            var b = src + v;
            for (var t = 0; t < taps; t++) a0 = Vector256.FusedMultiplyAdd(Vector256.Create(w[t]), Vector256.Load(b + tapOff[t]), a0);
            Vector256.Store(a0, acc + v);
            return;
        }
        for (; v < columns; v++)
        {
            var a0 = 0f;
            var b = src + v;
            for (var t = 0; t < taps; t++) a0 = MathF.FusedMultiplyAdd(w[t], b[tapOff[t]], a0);
            acc[v] = a0;
        }
    }

    /// <summary>Four vectors of <see cref="DepthwisePlane"/>'s columns from <paramref name="src"/> into <paramref name="acc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DepthwiseBlock<TV>(float* src, float* w, int* tapOff, int taps, float* acc) where TV : struct, ILanes<TV>
    {
        var n = TV.Count;
        TV a0 = TV.Zero, a1 = TV.Zero, a2 = TV.Zero, a3 = TV.Zero;
        for (var t = 0; t < taps; t++)
        {
            var wt = TV.Broadcast(w[t]);
            var p = src + tapOff[t];
            a0 = TV.FusedMultiplyAdd(wt, TV.Load(p), a0);
            a1 = TV.FusedMultiplyAdd(wt, TV.Load(p + n), a1);
            a2 = TV.FusedMultiplyAdd(wt, TV.Load(p + 2 * n), a2);
            a3 = TV.FusedMultiplyAdd(wt, TV.Load(p + 3 * n), a3);
        }
        a0.Store(acc);
        a1.Store(acc + n);
        a2.Store(acc + 2 * n);
        a3.Store(acc + 3 * n);
    }

    /// <summary>
    /// Transposed convolution: per image, columns[(c_out, tap), i] = Wᵀ·X as a grouped GEMM, then each output plane
    /// gathers its taps (col2im) and goes through the epilogue.
    /// </summary>
    private static Tensor Transposed(Conv conv, ConvGeometry geo, Tensor input, Epilogue ep, Pass pass)
    {
        var threads = pass.Threads;
        int cinG = geo.InGroupChannels, coutG = geo.OutGroupChannels, kvol = geo.KernelVolume;
        var mG = coutG * kvol;
        var inVol = geo.InVolume;
        var outVol = geo.OutVolume;
        var weight = conv.Weight;
        // Weight [C_in, C_out/g, *k]: row (c_out_g, tap), column c_in_g of group g sits at ((g·cinG + c)·mG + row).
        var packedA = pass.Pack(weight, (PackTransposed, geo.Groups, 0),
            () => Gemm.PackWeight(weight, geo.Groups, mG, cinG, (long)cinG * mG, 1, mG, threads, channelScale =>
            {
                // Row (c_out_g, tap) of group g belongs to output channel g·coutG + c_out_g.
                var rows = new double[geo.Groups * mG];
                for (var r = 0; r < rows.Length; r++) rows[r] = channelScale[r / mG * coutG + r % mG / kvol];
                return rows;
            }));
        var koff = new int[cinG];
        for (var c = 0; c < cinG; c++) koff[c] = c * inVol;
        var output = pass.Zeroed(checked(geo.Batch * geo.OutChannels * outVol));
        var cols = ArrayPool<float>.Shared.Rent(checked(geo.Groups * mG * inVol));
        try
        {
            for (var n = 0; n < geo.Batch; n++)
            {
                var b = new BSource(input.RawFloat32, (long)n * geo.InChannels * inVol, 0, (long)cinG * inVol, koff, null, inVol);
                var c = new CTarget(cols, 0, 0, (long)mG * inVol, inVol, 1, null);
                Gemm.Run(packedA, mG, cinG, b, c, Epilogue.None, 1, geo.Groups, threads);
                var image = n;
                Par.For(geo.OutChannels, threads, (long)kvol * inVol, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int co) =>
                {
                    var (scale, shift) = ep.At(co);
                    fixed (float* colp = cols, outp = output)
                    {
                        var dst = outp + ((long)image * geo.OutChannels + co) * outVol;
                        Col2Im(colp + (long)co * kvol * inVol, dst, geo);
                        Epilogue.ApplyRun(dst, dst, outVol, scale, shift, ep.Scale is not null, ep.Activation);
                    }
                });
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(cols);
        }
        return Tensor.Adopt(output, geo.OutputShape);
    }

    /// <summary>Adds every tap's column row into the (zeroed) output plane at <c>o = i·stride − padding + tap·dilation</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Col2Im(float* col, float* dst, ConvGeometry geo)
    {
        int[] n = geo.In, o = geo.Out, kern = geo.Kernel, s = geo.Stride, dil = geo.Dilation, pad = geo.PadLeft;
        var inVol = geo.InVolume;
        for (int kd = 0, t = 0; kd < kern[0]; kd++)
            for (var kh = 0; kh < kern[1]; kh++)
                for (var kw = 0; kw < kern[2]; kw++, t++)
                {
                    var src = col + (long)t * inVol;
                    // Input columns whose output lands inside: 0 <= iw·s − pad + kw·dil < out.
                    var shiftW = kw * dil[2] - pad[2];
                    var iwLo = shiftW >= 0 ? 0 : (-shiftW + s[2] - 1) / s[2];
                    var iwHi = Math.Min(n[2], o[2] - 1 - shiftW < 0 ? 0 : (o[2] - 1 - shiftW) / s[2] + 1);
                    for (var id = 0; id < n[0]; id++)
                    {
                        var od = id * s[0] - pad[0] + kd * dil[0];
                        if ((uint)od >= (uint)o[0]) continue;
                        for (var ih = 0; ih < n[1]; ih++)
                        {
                            var oh = ih * s[1] - pad[1] + kh * dil[1];
                            if ((uint)oh >= (uint)o[1]) continue;
                            var srow = src + ((long)id * n[1] + ih) * n[2];
                            var drow = dst + ((long)od * o[1] + oh) * o[2] + shiftW;
                            for (var iw = iwLo; iw < iwHi; iw++) drow[iw * s[2]] += srow[iw];
                        }
                    }
                }
    }
}
