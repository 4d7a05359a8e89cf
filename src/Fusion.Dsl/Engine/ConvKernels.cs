using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Convolution and transposed convolution of every rank on batched inputs, with an epilogue fused into the write-out.
/// Forward convolutions pad the input once (zeros or the padding mode) and then run a valid convolution:
/// a grouped GEMM whose B operand is read straight from the padded input (a Toeplitz view for unit stride, so 1×1
/// convolutions are a plain GEMM; a gather for other strides), or a direct kernel when each group has one input
/// channel (depthwise). Transposed convolutions are a GEMM into columns followed by a scatter (col2im).
/// </summary>
internal static unsafe class ConvKernels
{
    private const int PackConv = 0;
    private const int PackTransposed = 1;

    /// <summary>The convolution of a batched input <c>[N, C, *spatial]</c> (checked by the caller) through <paramref name="ep"/>.</summary>
    public static Tensor Forward(Conv conv, Tensor input, Epilogue ep, int threads)
    {
        var geo = ConvGeometry.Create(conv, input.Shape);
        return geo.Transposed ? Transposed(conv, geo, input, ep, threads) : Direct(conv, geo, input, ep, threads);
    }

    private static Tensor Direct(Conv conv, ConvGeometry geo, Tensor input, Epilogue ep, int threads)
    {
        var output = GC.AllocateUninitializedArray<float>(checked(geo.Batch * geo.OutChannels * geo.OutVolume));
        float[]? rented = null;
        try
        {
            float[] src;
            if (geo.NeedsPadding)
            {
                rented = ArrayPool<float>.Shared.Rent(checked(geo.Batch * geo.InChannels * geo.PaddedVolume));
                Pad(input.RawFloat32, rented, geo, threads);
                src = rented;
            }
            else src = input.RawFloat32;

            if (geo.InGroupChannels == 1 && geo.Groups > 1) Depthwise(conv.Weight.RawFloat32, src, output, geo, ep, threads);
            else ConvGemm(conv, geo, src, output, ep, threads);
        }
        finally
        {
            if (rented is not null) ArrayPool<float>.Shared.Return(rented);
        }
        return Tensor.Adopt(output, geo.OutputShape);
    }

    /// <summary>Copies every channel into <paramref name="dst"/> with the geometry's padding, filled per the padding mode.</summary>
    private static void Pad(float[] src, float[] dst, ConvGeometry geo, int threads)
    {
        var planes = geo.Batch * geo.InChannels;
        Par.For(planes, threads, geo.PaddedVolume, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            fixed (float* s0 = src, d0 = dst)
                PadPlane(s0 + (long)plane * geo.InVolume, d0 + (long)plane * geo.PaddedVolume, geo);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PadPlane(float* src, float* dst, ConvGeometry geo)
    {
        int[] n = geo.In, p = geo.Padded, l = geo.PadLeft;
        var mode = geo.Mode;
        for (var d = 0; d < p[0]; d++)
        {
            var sd = ConvGeometry.SourceIndex(d - l[0], n[0], mode);
            for (var h = 0; h < p[1]; h++)
            {
                var sh = ConvGeometry.SourceIndex(h - l[1], n[1], mode);
                var row = dst + ((long)d * p[1] + h) * p[2];
                if (sd < 0 || sh < 0)
                {
                    new Span<float>(row, p[2]).Clear();
                    continue;
                }
                var srow = src + ((long)sd * n[1] + sh) * n[2];
                for (var w = 0; w < l[2]; w++)
                {
                    var sw = ConvGeometry.SourceIndex(w - l[2], n[2], mode);
                    row[w] = sw < 0 ? 0f : srow[sw];
                }
                new ReadOnlySpan<float>(srow, n[2]).CopyTo(new Span<float>(row + l[2], n[2]));
                for (var w = l[2] + n[2]; w < p[2]; w++)
                {
                    var sw = ConvGeometry.SourceIndex(w - l[2], n[2], mode);
                    row[w] = sw < 0 ? 0f : srow[sw];
                }
            }
        }
    }

    /// <summary>Valid convolution of the padded input as one GEMM per (image, group).</summary>
    private static void ConvGemm(Conv conv, ConvGeometry geo, float[] src, float[] output, Epilogue ep, int threads)
    {
        int cinG = geo.InGroupChannels, coutG = geo.OutGroupChannels, kvol = geo.KernelVolume, k = cinG * kvol;
        var weight = conv.Weight;
        var packedA = Gemm.CachedPack(weight, (PackConv, geo.Groups, 0),
            () => Gemm.PackA(weight.Float32, geo.Groups, coutG, k, (long)coutG * k, k, 1));

        int[] p = geo.Padded, kern = geo.Kernel, dil = geo.Dilation, s = geo.Stride, o = geo.Out;
        var plane = geo.PaddedVolume;
        var koff = new int[k];
        for (int ci = 0, i = 0; ci < cinG; ci++)
            for (var kd = 0; kd < kern[0]; kd++)
                for (var kh = 0; kh < kern[1]; kh++)
                    for (var kw = 0; kw < kern[2]; kw++)
                        koff[i++] = ci * plane + (kd * dil[0] * p[1] + kh * dil[1]) * p[2] + kw * dil[2];

        int columns;
        int[]? colBase = null, colMap = null;
        if (geo.UnitStride)
        {
            // Toeplitz view: column v is padded position v; positions past an output row's end are computed and dropped.
            columns = ((o[0] - 1) * p[1] + (o[1] - 1)) * p[2] + o[2];
            if (p[1] != o[1] || p[2] != o[2])
            {
                colMap = new int[columns];
                for (var v = 0; v < columns; v++)
                {
                    var od = v / (p[1] * p[2]);
                    var r = v - od * p[1] * p[2];
                    var oh = r / p[2];
                    var ow = r - oh * p[2];
                    colMap[v] = oh < o[1] && ow < o[2] ? (od * o[1] + oh) * o[2] + ow : -1;
                }
            }
        }
        else
        {
            columns = geo.OutVolume;
            colBase = new int[columns];
            for (int od = 0, j = 0; od < o[0]; od++)
                for (var oh = 0; oh < o[1]; oh++)
                    for (var ow = 0; ow < o[2]; ow++)
                        colBase[j++] = (od * s[0] * p[1] + oh * s[1]) * p[2] + ow * s[2];
        }
        var outVol = geo.OutVolume;
        var b = new BSource(src, 0, (long)geo.InChannels * plane, (long)cinG * plane, koff, colBase, columns);
        var c = new CTarget(output, 0, (long)geo.OutChannels * outVol, (long)coutG * outVol, outVol, 1, colMap);
        Gemm.Run(packedA, coutG, k, b, c, ep, geo.Batch, geo.Groups, threads);
    }

    /// <summary>One input channel per group (depthwise, possibly with a channel multiplier): a direct kernel per output plane.</summary>
    private static void Depthwise(float[] weight, float[] src, float[] output, ConvGeometry geo, Epilogue ep, int threads)
    {
        var coutG = geo.OutGroupChannels;
        var planes = geo.Batch * geo.OutChannels;
        Par.For(planes, threads, (long)geo.OutVolume * geo.KernelVolume, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int idx) =>
        {
            var n = idx / geo.OutChannels;
            var co = idx - n * geo.OutChannels;
            var ci = co / coutG;
            var (scale, shift) = ep.At(co);
            fixed (float* w = weight, s = src, d = output)
                DepthwisePlane(s + ((long)n * geo.InChannels + ci) * geo.PaddedVolume, w + (long)co * geo.KernelVolume,
                    d + (long)idx * geo.OutVolume, geo, scale, shift, ep.Scale is not null, ep.Activation);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DepthwisePlane(float* src, float* w, float* dst, ConvGeometry geo, float scale, float shift, bool hasScale, Act act)
    {
        int[] p = geo.Padded, kern = geo.Kernel, dil = geo.Dilation, s = geo.Stride, o = geo.Out;
        var taps = geo.KernelVolume;
        var tapOff = stackalloc int[taps];
        for (int kd = 0, t = 0; kd < kern[0]; kd++)
            for (var kh = 0; kh < kern[1]; kh++)
                for (var kw = 0; kw < kern[2]; kw++)
                    tapOff[t++] = (kd * dil[0] * p[1] + kh * dil[1]) * p[2] + kw * dil[2];
        var vs = Vector256.Create(scale);
        var vb = Vector256.Create(shift);
        var sw = s[2];
        for (var od = 0; od < o[0]; od++)
            for (var oh = 0; oh < o[1]; oh++)
            {
                var baseRow = src + ((long)od * s[0] * p[1] + (long)oh * s[1]) * p[2];
                var drow = dst + ((long)od * o[1] + oh) * o[2];
                var ow = 0;
                if (sw == 1)
                {
                    for (; ow <= o[2] - 8; ow += 8)
                    {
                        var acc = Vector256<float>.Zero;
                        var b = baseRow + ow;
                        for (var t = 0; t < taps; t++)
                            acc = Vector256.FusedMultiplyAdd(Vector256.Create(w[t]), Vector256.Load(b + tapOff[t]), acc);
                        Vector256.Store(Epilogue.Apply(acc, vs, vb, hasScale, act), drow + ow);
                    }
                }
                for (; ow < o[2]; ow++)
                {
                    var acc = 0f;
                    var b = baseRow + (long)ow * sw;
                    for (var t = 0; t < taps; t++) acc = MathF.FusedMultiplyAdd(w[t], b[tapOff[t]], acc);
                    drow[ow] = Epilogue.Apply(acc, scale, shift, hasScale, act);
                }
            }
    }

    /// <summary>
    /// Transposed convolution: per image, columns[(c_out, tap), i] = Wᵀ·X as a grouped GEMM, then each output plane
    /// gathers its taps (col2im) and goes through the epilogue.
    /// </summary>
    private static Tensor Transposed(Conv conv, ConvGeometry geo, Tensor input, Epilogue ep, int threads)
    {
        int cinG = geo.InGroupChannels, coutG = geo.OutGroupChannels, kvol = geo.KernelVolume;
        var mG = coutG * kvol;
        var inVol = geo.InVolume;
        var outVol = geo.OutVolume;
        var weight = conv.Weight;
        // Weight [C_in, C_out/g, *k]: row (c_out_g, tap), column c_in_g of group g sits at ((g·cinG + c)·mG + row).
        var packedA = Gemm.CachedPack(weight, (PackTransposed, geo.Groups, 0),
            () => Gemm.PackA(weight.Float32, geo.Groups, mG, cinG, (long)cinG * mG, 1, mG));
        var koff = new int[cinG];
        for (var c = 0; c < cinG; c++) koff[c] = c * inVol;
        var output = new float[checked(geo.Batch * geo.OutChannels * outVol)];
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
