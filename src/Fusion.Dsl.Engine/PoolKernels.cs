using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>MaxPool2d, AvgPool2d and AdaptiveAvgPool2d on batched <c>[N, C, H, W]</c> inputs, one plane per work item.</summary>
internal static unsafe class PoolKernels
{
    /// <summary>PyTorch's pooled size along one axis, refusing windows that leave nothing.</summary>
    private static int OutSize(int input, int kernel, int stride, int pad, int dilation, bool ceil, string what)
    {
        var o = SlidingWindow.PoolOutput(input, kernel, stride, pad, dilation, ceil);
        if (o <= 0) throw new EngineInputException($"{what}: input size {input} is too small for kernel {kernel} (dilation {dilation}, padding {pad}): output size would be {o}");
        // The window's reach and the scratch rows are sized from these values in 32-bit arithmetic: bounded here.
        if (o > Limits.MaxElements || (long)dilation * (kernel - 1) + 2L * pad + input > Limits.MaxElements)
            throw new EngineInputException($"{what}: kernel {kernel}, dilation {dilation} and padding {pad} reach over the engine's limit of {Limits.MaxElements} elements per row");
        return (int)o;
    }

    /// <summary>
    /// A pooling kernel on <c>[N, C, H, W]</c> or unbatched <c>[C, H, W]</c> (run as a batch of one), refusing empty planes
    /// before the kernel indexes them: the one input check of the pooling layers and the functional pools.
    /// </summary>
    public static Tensor Planes(Tensor x, Func<Tensor, Tensor> run)
    {
        if (x.Rank is not (3 or 4) || x.Shape[(x.Rank - 2)..].Contains(0))
            throw new EngineInputException($"expected input of shape [N, C, H, W] or unbatched [C, H, W] with non-empty H and W, got {Tensor.ShapeString(x.Shape)}");
        if (x.Rank == 4) return run(x);
        var y = run(x.Reshape([1, .. x.Shape]));
        return y.Reshape(y.Shape[1..].ToArray());
    }

    /// <summary>The forward of <c>MaxPool2d</c>.</summary>
    [LayerForward("MaxPool2d")]
    public static Tensor MaxPool2dForward(Evaluator ev, MaxPool2d m, Tensor x) => Planes(x, t => MaxPool(m, t, ev.Pass));

    /// <summary>The forward of <c>AvgPool2d</c>.</summary>
    [LayerForward("AvgPool2d")]
    public static Tensor AvgPool2dForward(Evaluator ev, AvgPool2d m, Tensor x) => Planes(x, t => AvgPool(m, t, ev.Pass));

    /// <summary>The forward of <c>AdaptiveAvgPool2d</c> (null sizes keep the input's).</summary>
    [LayerForward("AdaptiveAvgPool2d")]
    public static Tensor AdaptiveAvgPool2dForward(Evaluator ev, AdaptiveAvgPool2d m, Tensor x)
        => Planes(x, t => AdaptiveAvgPool(t, m.OutputSize[0], m.OutputSize[1], ev.Pass));

    public static Tensor MaxPool(MaxPool2d m, Tensor x, Pass pass)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        int kh = m.KernelSize[0], kw = m.KernelSize[1], sh = m.Stride[0], sw = m.Stride[1];
        int ph = m.Padding[0], pw = m.Padding[1], dh = m.Dilation[0], dw = m.Dilation[1];
        var oh = OutSize(h, kh, sh, ph, dh, m.CeilMode, "MaxPool2d");
        var ow = OutSize(w, kw, sw, pw, dw, m.CeilMode, "MaxPool2d");
        var output = pass.Output(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        var g = new MaxGeometry(h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw);
        Par.For(n * c, pass.Threads, (long)h * w * (kw + 2), (int plane) =>
        {
            var scratch = ArrayPool<float>.Shared.Rent(g.ScratchFloats);
            try
            {
                fixed (float* s0 = src, d0 = output, sc = scratch)
                    MaxPlane(s0 + (long)plane * h * w, d0 + (long)plane * oh * ow, sc, g);
            }
            finally
            {
                ArrayPool<float>.Shared.Return(scratch);
            }
        });
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }

    /// <summary>The sizes of one max-pool call, and the scratch one plane needs.</summary>
    private sealed record MaxGeometry(int H, int W, int OH, int OW, int KH, int KW, int SH, int SW, int PH, int PW, int DH, int DW)
    {
        /// <summary>Length of one stride phase of a padded row: every <c>ox + tap/SW</c> a window reads.</summary>
        public int PhaseLength => OW + (KW - 1) * DW / SW + 1;
        /// <summary>The padded row (-inf outside the input) covering every window, ceil_mode included.</summary>
        public int PaddedLength => PhaseLength * SW;
        public int ScratchFloats => PaddedLength + PhaseLength * SW + H * OW + 8;
    }

    /// <summary>
    /// One plane, separably (max is associative, and IEEE maximum lets a NaN win as PyTorch's does): each input row is
    /// padded with -inf and split into its stride phases so every tap reads a contiguous run, reduced over the kernel
    /// width with vector maxima; then output rows take the maximum of their kernel's rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaxPlane(float* src, float* dst, float* scratch, MaxGeometry g)
    {
        var padded = scratch;
        var phases = padded + g.PaddedLength;
        var rows = phases + g.PhaseLength * g.SW;
        var phaseLen = g.PhaseLength;
        for (var y = 0; y < g.H; y++)
        {
            // Padded position q holds input column q - PW.
            var row = src + (long)y * g.W;
            var left = Math.Min(g.PW, g.PaddedLength);
            var copy = Math.Clamp(g.PaddedLength - g.PW, 0, g.W);
            new Span<float>(padded, left).Fill(float.NegativeInfinity);
            new ReadOnlySpan<float>(row, copy).CopyTo(new Span<float>(padded + left, copy));
            new Span<float>(padded + left + copy, g.PaddedLength - left - copy).Fill(float.NegativeInfinity);
            float* phase;
            if (g.SW == 1) phase = padded;
            else
            {
                phase = phases;
                RowOps.Deinterleave(padded, phases, phaseLen, g.SW, phaseLen);
            }
            var hrow = rows + (long)y * g.OW;
            for (var j = 0; j < g.KW; j++)
            {
                var t = j * g.DW;
                var run = phase + (t % g.SW) * phaseLen + t / g.SW;
                if (j == 0) new ReadOnlySpan<float>(run, g.OW).CopyTo(new Span<float>(hrow, g.OW));
                else MaxInto(hrow, run, g.OW);
            }
        }
        for (var oy = 0; oy < g.OH; oy++)
        {
            var drow = dst + (long)oy * g.OW;
            var first = true;
            for (var i = 0; i < g.KH; i++)
            {
                var yy = oy * g.SH - g.PH + i * g.DH;
                if ((uint)yy >= (uint)g.H) continue;
                if (first) new ReadOnlySpan<float>(rows + (long)yy * g.OW, g.OW).CopyTo(new Span<float>(drow, g.OW));
                else MaxInto(drow, rows + (long)yy * g.OW, g.OW);
                first = false;
            }
            if (first) new Span<float>(drow, g.OW).Fill(float.NegativeInfinity);
        }
    }

    /// <summary><c>acc[i] = max(acc[i], x[i])</c>, NaN-propagating; 512-bit vectors where AVX-512 runs (maximum is exact, so the width changes no bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MaxInto(float* acc, float* x, int n)
    {
        var i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16) Vector512.Store(Vector512.Max(Vector512.Load(acc + i), Vector512.Load(x + i)), acc + i);
        for (; i <= n - 8; i += 8) Vector256.Store(Vector256.Max(Vector256.Load(acc + i), Vector256.Load(x + i)), acc + i);
        for (; i < n; i++) acc[i] = MathF.Max(acc[i], x[i]);
    }

    public static Tensor AvgPool(AvgPool2d m, Tensor x, Pass pass)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        int kh = m.KernelSize[0], kw = m.KernelSize[1], sh = m.Stride[0], sw = m.Stride[1];
        int ph = m.Padding[0], pw = m.Padding[1];
        var oh = OutSize(h, kh, sh, ph, 1, m.CeilMode, "AvgPool2d");
        var ow = OutSize(w, kw, sw, pw, 1, m.CeilMode, "AvgPool2d");
        var output = pass.Output(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        var includePad = m.CountIncludePad;
        Par.For(n * c, pass.Threads, (long)oh * ow * kh * kw, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            fixed (float* s0 = src, d0 = output)
            {
                var s = s0 + (long)plane * h * w;
                var d = d0 + (long)plane * oh * ow;
                for (var y = 0; y < oh; y++)
                {
                    // PyTorch's divisor: the window clipped to the padded input (count_include_pad) or to the input.
                    var y0 = y * sh - ph;
                    var y1 = Math.Min(y0 + kh, h + ph);
                    var poolH = y1 - y0;
                    var ya = Math.Max(y0, 0);
                    var yb = Math.Min(y1, h);
                    for (var xo = 0; xo < ow; xo++)
                    {
                        var x0 = xo * sw - pw;
                        var x1 = Math.Min(x0 + kw, w + pw);
                        var pool = poolH * (x1 - x0);
                        var xa = Math.Max(x0, 0);
                        var xb = Math.Min(x1, w);
                        if (ya >= yb || xa >= xb) { d[(long)y * ow + xo] = 0f; continue; }
                        var sum = 0f;
                        for (var yy = ya; yy < yb; yy++)
                            for (var xx = xa; xx < xb; xx++)
                                sum += s[(long)yy * w + xx];
                        var divisor = includePad ? pool : (yb - ya) * (xb - xa);
                        d[(long)y * ow + xo] = sum / divisor;
                    }
                }
            }
        });
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }

    /// <summary>Adaptive average pooling with PyTorch's windows <c>[floor(i·in/out), ceil((i+1)·in/out))</c>;
    /// a null size keeps the input's size on that axis.</summary>
    public static Tensor AdaptiveAvgPool(Tensor x, int? outH, int? outW, Pass pass)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        var oh = outH ?? h;
        var ow = outW ?? w;
        if (oh <= 0 || ow <= 0) throw new EngineInputException($"adaptive_avg_pool2d: output size ({oh}, {ow}) must be positive");
        var output = pass.Output(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        Par.For(n * c, pass.Threads, (long)h * w, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            fixed (float* s0 = src, d0 = output)
            {
                var s = s0 + (long)plane * h * w;
                var d = d0 + (long)plane * oh * ow;
                for (var y = 0; y < oh; y++)
                {
                    var ya = (int)((long)y * h / oh);
                    var yb = (int)(((long)(y + 1) * h + oh - 1) / oh);
                    for (var xo = 0; xo < ow; xo++)
                    {
                        var xa = (int)((long)xo * w / ow);
                        var xb = (int)(((long)(xo + 1) * w + ow - 1) / ow);
                        // A window spanning whole rows is one contiguous run (the global pool: the whole plane).
                        var sum = 0f;
                        if (xa == 0 && xb == w) sum = Sum(s + (long)ya * w, (yb - ya) * w);
                        else
                            for (var yy = ya; yy < yb; yy++)
                                sum += Sum(s + (long)yy * w + xa, xb - xa);
                        d[(long)y * ow + xo] = sum / ((yb - ya) * (xb - xa));
                    }
                }
            }
        });
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }

    /// <summary>
    /// The sum of <paramref name="n"/> floats in four 8-lane partial sums, then their lanes, then the tail: a fixed order
    /// whatever the instruction set (PyTorch's global pool, a <c>mean</c> over the plane, sums in vector partials too).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Sum(float* p, int n)
    {
        var i = 0;
        var total = 0f;
        if (n >= 32)
        {
            Vector256<float> s0 = Vector256<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (; i <= n - 32; i += 32)
            {
                s0 += Vector256.Load(p + i);
                s1 += Vector256.Load(p + i + 8);
                s2 += Vector256.Load(p + i + 16);
                s3 += Vector256.Load(p + i + 24);
            }
            // Lanes added in a stated order (Vector256.Sum's order is the runtime's to choose).
            var v = (s0 + s1) + (s2 + s3);
            total = ((v.GetElement(0) + v.GetElement(1)) + (v.GetElement(2) + v.GetElement(3)))
                    + ((v.GetElement(4) + v.GetElement(5)) + (v.GetElement(6) + v.GetElement(7)));
        }
        for (; i < n; i++) total += p[i];
        return total;
    }
}
