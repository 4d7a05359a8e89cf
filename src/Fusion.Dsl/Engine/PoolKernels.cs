using System.Runtime.CompilerServices;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>MaxPool2d, AvgPool2d and AdaptiveAvgPool2d on batched <c>[N, C, H, W]</c> inputs, one plane per work item.</summary>
internal static unsafe class PoolKernels
{
    /// <summary>PyTorch's pooled size along one axis, refusing windows that leave nothing.</summary>
    private static int OutSize(int input, int kernel, int stride, int pad, int dilation, bool ceil, string what)
    {
        var o = PoolArgs.OutputSize(input, kernel, stride, pad, dilation, ceil);
        if (o <= 0) throw new EngineInputException($"{what}: input size {input} is too small for kernel {kernel} (dilation {dilation}, padding {pad}): output size would be {o}");
        return o;
    }

    public static Tensor MaxPool(MaxPool2d m, Tensor x, int threads)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        int kh = m.KernelSize[0], kw = m.KernelSize[1], sh = m.Stride[0], sw = m.Stride[1];
        int ph = m.Padding[0], pw = m.Padding[1], dh = m.Dilation[0], dw = m.Dilation[1];
        var oh = OutSize(h, kh, sh, ph, dh, m.CeilMode, "MaxPool2d");
        var ow = OutSize(w, kw, sw, pw, dw, m.CeilMode, "MaxPool2d");
        var output = GC.AllocateUninitializedArray<float>(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        Par.For(n * c, threads, (long)oh * ow * kh * kw, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
        {
            fixed (float* s0 = src, d0 = output)
            {
                var s = s0 + (long)plane * h * w;
                var d = d0 + (long)plane * oh * ow;
                for (var y = 0; y < oh; y++)
                {
                    var y0 = y * sh - ph;
                    for (var xo = 0; xo < ow; xo++)
                    {
                        var x0 = xo * sw - pw;
                        var best = float.NegativeInfinity;
                        for (var i = 0; i < kh; i++)
                        {
                            var yy = y0 + i * dh;
                            if ((uint)yy >= (uint)h) continue;
                            var row = s + (long)yy * w;
                            for (var j = 0; j < kw; j++)
                            {
                                var xx = x0 + j * dw;
                                if ((uint)xx >= (uint)w) continue;
                                var v = row[xx];
                                // PyTorch: a NaN in the window wins.
                                if (v > best || float.IsNaN(v)) best = v;
                            }
                        }
                        d[(long)y * ow + xo] = best;
                    }
                }
            }
        });
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }

    public static Tensor AvgPool(AvgPool2d m, Tensor x, int threads)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        int kh = m.KernelSize[0], kw = m.KernelSize[1], sh = m.Stride[0], sw = m.Stride[1];
        int ph = m.Padding[0], pw = m.Padding[1];
        var oh = OutSize(h, kh, sh, ph, 1, m.CeilMode, "AvgPool2d");
        var ow = OutSize(w, kw, sw, pw, 1, m.CeilMode, "AvgPool2d");
        var output = GC.AllocateUninitializedArray<float>(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        var includePad = m.CountIncludePad;
        Par.For(n * c, threads, (long)oh * ow * kh * kw, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
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
    public static Tensor AdaptiveAvgPool(Tensor x, int? outH, int? outW, int threads)
    {
        int n = x.Size(0), c = x.Size(1), h = x.Size(2), w = x.Size(3);
        var oh = outH ?? h;
        var ow = outW ?? w;
        if (oh <= 0 || ow <= 0) throw new EngineInputException($"adaptive_avg_pool2d: output size ({oh}, {ow}) must be positive");
        var output = GC.AllocateUninitializedArray<float>(checked(n * c * oh * ow));
        var src = x.RawFloat32;
        Par.For(n * c, threads, (long)h * w, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int plane) =>
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
                        var sum = 0f;
                        for (var yy = ya; yy < yb; yy++)
                            for (var xx = xa; xx < xb; xx++)
                                sum += s[(long)yy * w + xx];
                        d[(long)y * ow + xo] = sum / ((yb - ya) * (xb - xa));
                    }
                }
            }
        });
        return Tensor.Adopt(output, [n, c, oh, ow]);
    }
}
