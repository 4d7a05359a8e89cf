using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Reference;

/// <summary>
/// The definitions, written as plainly as possible with float64 accumulation and none of the engine's kernels,
/// geometry or padding code: the independent oracle the tests compare the fast kernels against.
/// Inputs are batched; slow by design.
/// </summary>
public static class NaiveReference
{
    /// <summary>Every multi-index of <paramref name="shape"/> in row-major order.</summary>
    private static IEnumerable<int[]> Indices(int[] shape)
    {
        var total = 1;
        foreach (var d in shape) total *= d;
        for (var flat = 0; flat < total; flat++)
        {
            var idx = new int[shape.Length];
            var r = flat;
            for (var i = shape.Length - 1; i >= 0; i--) { idx[i] = r % shape[i]; r /= shape[i]; }
            yield return idx;
        }
    }

    private static int Flat(int[] shape, params int[] idx)
    {
        var f = 0;
        for (var i = 0; i < shape.Length; i++) f = f * shape[i] + idx[i];
        return f;
    }

    /// <summary>Value of a padded channel at position <paramref name="pos"/>, by PyTorch's padding modes.</summary>
    private static double PaddedAt(float[] x, int[] xShape, int n, int c, int[] pos, PaddingMode mode)
    {
        var full = new int[pos.Length + 2];
        full[0] = n; full[1] = c;
        for (var i = 0; i < pos.Length; i++)
        {
            var size = xShape[i + 2];
            var p = pos[i];
            if (p < 0 || p >= size)
            {
                switch (mode)
                {
                    case PaddingMode.Zeros: return 0;
                    case PaddingMode.Reflect: p = p < 0 ? -p : 2 * size - 2 - p; break;
                    case PaddingMode.Replicate: p = p < 0 ? 0 : size - 1; break;
                    case PaddingMode.Circular: p = p < 0 ? p + size : p - size; break;
                }
            }
            full[i + 2] = p;
        }
        return x[Flat(xShape, full)];
    }

    /// <summary>Conv / ConvTranspose of any rank by the defining sums.</summary>
    public static Tensor Conv(Conv conv, Tensor input)
    {
        var r = conv.Rank;
        var xs = input.Dimensions.ToArray();
        var x = input.ToArray();
        var w = conv.Weight.ToArray();
        var ws = conv.Weight.Dimensions.ToArray();
        var bias = conv.Bias?.ToArray();
        int n = xs[0], g = conv.Groups, cinG = conv.InChannels / g, coutG = conv.OutChannels / g;
        var k = conv.KernelSize.ToArray();
        var s = conv.Stride.ToArray();
        var d = conv.Dilation.ToArray();
        var left = new int[r];
        var right = new int[r];
        for (var i = 0; i < r; i++)
        {
            switch (conv.Padding.Kind)
            {
                case PaddingKind.Explicit: left[i] = right[i] = conv.Padding.Amounts[i]; break;
                case PaddingKind.Same:
                    var total = d[i] * (k[i] - 1);
                    left[i] = total / 2; right[i] = total - total / 2; break;
            }
        }
        var outSp = new int[r];
        for (var i = 0; i < r; i++)
            outSp[i] = conv.Transposed
                ? (xs[i + 2] - 1) * s[i] - 2 * left[i] + d[i] * (k[i] - 1) + conv.OutputPadding[i] + 1
                : (xs[i + 2] + left[i] + right[i] - d[i] * (k[i] - 1) - 1) / s[i] + 1;
        int[] os = [n, conv.OutChannels, .. outSp];
        var acc = new double[os.Aggregate(1, (a, b) => checked(a * b))];
        if (!conv.Transposed)
        {
            foreach (var o in Indices(os))
            {
                var co = o[1];
                var grp = co / coutG;
                double sum = bias is null ? 0 : bias[co];
                for (var ci = 0; ci < cinG; ci++)
                    foreach (var kk in Indices(k))
                    {
                        var pos = new int[r];
                        for (var i = 0; i < r; i++) pos[i] = o[i + 2] * s[i] - left[i] + kk[i] * d[i];
                        sum += w[Flat(ws, [co, ci, .. kk])] * PaddedAt(x, xs, o[0], grp * cinG + ci, pos, conv.PaddingMode);
                    }
                acc[Flat(os, o)] = sum;
            }
        }
        else
        {
            foreach (var o in Indices(os)) acc[Flat(os, o)] = bias is null ? 0 : bias[o[1]];
            foreach (var i in Indices(xs))
            {
                var ci = i[1];
                var grp = ci / cinG;
                for (var col = 0; col < coutG; col++)
                    foreach (var kk in Indices(k))
                    {
                        var o = new int[r + 2];
                        o[0] = i[0]; o[1] = grp * coutG + col;
                        var inside = true;
                        for (var a = 0; a < r; a++)
                        {
                            o[a + 2] = i[a + 2] * s[a] - left[a] + kk[a] * d[a];
                            inside &= o[a + 2] >= 0 && o[a + 2] < outSp[a];
                        }
                        if (inside) acc[Flat(os, o)] += (double)x[Flat(xs, i)] * w[Flat(ws, [ci, col, .. kk])];
                    }
            }
        }
        return Tensor.FromFloat32(acc.Select(v => (float)v).ToArray(), os);
    }

    /// <summary>Linear over the last dimension.</summary>
    public static Tensor Linear(Linear linear, Tensor input)
    {
        var x = input.ToArray();
        var w = linear.Weight.ToArray();
        var b = linear.Bias?.ToArray();
        int inF = linear.InFeatures, outF = linear.OutFeatures, rows = x.Length / Math.Max(1, inF);
        if (inF == 0) rows = input.Dimensions.Take(input.Rank - 1).Aggregate(1, (p, q) => p * q);
        var y = new float[rows * outF];
        for (var r = 0; r < rows; r++)
            for (var o = 0; o < outF; o++)
            {
                double sum = b is null ? 0 : b[o];
                for (var i = 0; i < inF; i++) sum += (double)x[r * inF + i] * w[o * inF + i];
                y[r * outF + o] = (float)sum;
            }
        return Tensor.FromFloat32(y, [.. input.Dimensions.Take(input.Rank - 1), outF]);
    }

    /// <summary>BatchNorm with running statistics (eval, tracked) or batch statistics (biased variance).</summary>
    public static Tensor BatchNorm(BatchNorm bn, Tensor input)
    {
        var x = input.ToArray();
        int n = input.Size(0), c = input.Size(1), inner = x.Length / (n * c);
        var y = new float[x.Length];
        var batchStats = bn.Training || bn.RunningMean is null;
        for (var ch = 0; ch < c; ch++)
        {
            double mean, variance;
            if (batchStats)
            {
                double sum = 0, sq = 0;
                for (var i = 0; i < n; i++) for (var j = 0; j < inner; j++) sum += x[(i * c + ch) * inner + j];
                mean = sum / (n * inner);
                for (var i = 0; i < n; i++) for (var j = 0; j < inner; j++) { var dv = x[(i * c + ch) * inner + j] - mean; sq += dv * dv; }
                variance = sq / (n * inner);
            }
            else
            {
                mean = bn.RunningMean![ch];
                variance = bn.RunningVar![ch];
            }
            var gamma = bn.Weight is null ? 1.0 : bn.Weight[ch];
            var beta = bn.Bias is null ? 0.0 : bn.Bias[ch];
            for (var i = 0; i < n; i++)
                for (var j = 0; j < inner; j++)
                {
                    var at = (i * c + ch) * inner + j;
                    y[at] = (float)((x[at] - mean) / Math.Sqrt(variance + bn.Eps) * gamma + beta);
                }
        }
        return Tensor.FromFloat32(y, input.Dimensions.ToArray());
    }

    /// <summary>The activation by its textbook formula in double.</summary>
    public static double Activation(ActivationKind kind, double v) => kind switch
    {
        ActivationKind.ReLU => double.IsNaN(v) ? v : Math.Max(v, 0),
        ActivationKind.ReLU6 => double.IsNaN(v) ? v : Math.Min(Math.Max(v, 0), 6),
        ActivationKind.Hardswish => v * Math.Min(Math.Max(v + 3, 0), 6) / 6,
        ActivationKind.Hardsigmoid => Math.Min(Math.Max(v + 3, 0), 6) / 6,
        _ => v / (1 + Math.Exp(-v)),
    };

    public static Tensor Activation(ActivationKind kind, Tensor x)
        => Tensor.FromFloat32(x.ToArray().Select(v => (float)Activation(kind, v)).ToArray(), x.Dimensions.ToArray());

    /// <summary>Pooled size along one axis: PyTorch's <c>pooling_output_shape</c>, written out again.</summary>
    private static int PoolOut(int size, int k, int s, int p, int d, bool ceil)
    {
        var numerator = size + 2 * p - d * (k - 1) - 1;
        var o = (int)(ceil ? Math.Ceiling(numerator / (double)s) : Math.Floor(numerator / (double)s)) + 1;
        if (ceil && (o - 1) * s >= size + p) o--;
        return o;
    }

    public static Tensor MaxPool2d(MaxPool2d m, Tensor input)
    {
        int n = input.Size(0), c = input.Size(1), h = input.Size(2), w = input.Size(3);
        var oh = PoolOut(h, m.KernelSize[0], m.Stride[0], m.Padding[0], m.Dilation[0], m.CeilMode);
        var ow = PoolOut(w, m.KernelSize[1], m.Stride[1], m.Padding[1], m.Dilation[1], m.CeilMode);
        var x = input.ToArray();
        var y = new float[n * c * oh * ow];
        for (var p = 0; p < n * c; p++)
            for (var i = 0; i < oh; i++)
                for (var j = 0; j < ow; j++)
                {
                    var best = double.NegativeInfinity;
                    for (var a = 0; a < m.KernelSize[0]; a++)
                        for (var b = 0; b < m.KernelSize[1]; b++)
                        {
                            var yy = i * m.Stride[0] - m.Padding[0] + a * m.Dilation[0];
                            var xx = j * m.Stride[1] - m.Padding[1] + b * m.Dilation[1];
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            double v = x[(p * h + yy) * w + xx];
                            if (double.IsNaN(v) || v > best) best = v;
                            if (double.IsNaN(best)) break;
                        }
                    y[(p * oh + i) * ow + j] = (float)best;
                }
        return Tensor.FromFloat32(y, n, c, oh, ow);
    }

    public static Tensor AvgPool2d(AvgPool2d m, Tensor input)
    {
        int n = input.Size(0), c = input.Size(1), h = input.Size(2), w = input.Size(3);
        int kh = m.KernelSize[0], kw = m.KernelSize[1], sh = m.Stride[0], sw = m.Stride[1], ph = m.Padding[0], pw = m.Padding[1];
        var oh = PoolOut(h, kh, sh, ph, 1, m.CeilMode);
        var ow = PoolOut(w, kw, sw, pw, 1, m.CeilMode);
        var x = input.ToArray();
        var y = new float[n * c * oh * ow];
        for (var p = 0; p < n * c; p++)
            for (var i = 0; i < oh; i++)
                for (var j = 0; j < ow; j++)
                {
                    double sum = 0;
                    int inside = 0, inPadded = 0;
                    for (var a = 0; a < kh; a++)
                        for (var b = 0; b < kw; b++)
                        {
                            var yy = i * sh - ph + a;
                            var xx = j * sw - pw + b;
                            // Cells of the window inside the padded input count when count_include_pad is set.
                            if (yy < h + ph && xx < w + pw) inPadded++;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            sum += x[(p * h + yy) * w + xx];
                            inside++;
                        }
                    var divisor = m.CountIncludePad ? inPadded : inside;
                    y[(p * oh + i) * ow + j] = inside == 0 ? 0f : (float)(sum / divisor);
                }
        return Tensor.FromFloat32(y, n, c, oh, ow);
    }

    public static Tensor AdaptiveAvgPool2d(Tensor input, int oh, int ow)
    {
        int n = input.Size(0), c = input.Size(1), h = input.Size(2), w = input.Size(3);
        var x = input.ToArray();
        var y = new float[n * c * oh * ow];
        for (var p = 0; p < n * c; p++)
            for (var i = 0; i < oh; i++)
                for (var j = 0; j < ow; j++)
                {
                    var y0 = (int)Math.Floor(i * (double)h / oh);
                    var y1 = (int)Math.Ceiling((i + 1) * (double)h / oh);
                    var x0 = (int)Math.Floor(j * (double)w / ow);
                    var x1 = (int)Math.Ceiling((j + 1) * (double)w / ow);
                    double sum = 0;
                    for (var yy = y0; yy < y1; yy++) for (var xx = x0; xx < x1; xx++) sum += x[(p * h + yy) * w + xx];
                    y[(p * oh + i) * ow + j] = (float)(sum / ((y1 - y0) * (x1 - x0)));
                }
        return Tensor.FromFloat32(y, n, c, oh, ow);
    }
}
