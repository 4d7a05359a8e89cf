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
    /// <summary>
    /// The forward of any modelled layer kind (<see cref="LayerKinds"/>) by its definition: the one place that says which
    /// definition computes a kind, so the completeness test can find a kind that has none.
    /// </summary>
    /// <exception cref="NotSupportedException">The reference has no definition for this kind of module.</exception>
    public static Tensor Forward(Algebra.Module m, Tensor input) => m switch
    {
        Conv c => Conv(c, input),
        Linear l => Linear(l, input),
        BatchNorm b => BatchNorm(b, input),
        Activation a => Activation(a.Kind, input),
        Identity => input,
        // Dropout in training mode is random; its definition for a reference is the eval one only.
        Dropout { Training: false } => input,
        Flatten f => Flatten(input, f.StartDim, f.EndDim),
        MaxPool2d p => MaxPool2d(p, input),
        AvgPool2d p => AvgPool2d(p, input),
        AdaptiveAvgPool2d p => AdaptiveAvgPool2d(input, p.OutputSize[0], p.OutputSize[1]),
        GLU g => Glu(input, g.Dim),
        _ => throw new NotSupportedException($"the naive reference has no forward for {m.Namespace}.{m.TypeName}"),
    };

    /// <summary>PyTorch's <c>flatten(start_dim, end_dim)</c>: the dimensions from start to end (negative from the end) as one.</summary>
    public static Tensor Flatten(Tensor input, int startDim, int endDim)
    {
        var dims = input.Dimensions.ToArray();
        int s = startDim < 0 ? startDim + dims.Length : startDim, e = endDim < 0 ? endDim + dims.Length : endDim;
        int[] shape = [.. dims[..s], dims[s..(e + 1)].Aggregate(1, (p, q) => p * q), .. dims[(e + 1)..]];
        return Tensor.FromFloat32(input.ToArray(), shape);
    }

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

    // ---- graph operations and carried modules ------------------------------------------------------------

    /// <summary>Row-major position of <paramref name="idx"/> in <paramref name="shape"/> (any rank).</summary>
    private static int At(int[] shape, int[] idx) => shape.Length == 0 ? 0 : Flat(shape, idx);

    /// <summary>PyTorch's <c>F.glu(input, dim)</c> by its definition: element (…, i, …) of the output is
    /// <c>x[…, i, …] · σ(x[…, i + n/2, …])</c> along the halved axis of size n.</summary>
    public static Tensor Glu(Tensor input, int dim)
    {
        var shape = input.Dimensions.ToArray();
        var d = dim < 0 ? dim + shape.Length : dim;
        var half = shape[d] / 2;
        var outer = shape[..d].Aggregate(1, (p, q) => p * q);
        var inner = shape[(d + 1)..].Aggregate(1, (p, q) => p * q);
        var x = input.ToArray();
        var y = new float[outer * half * inner];
        for (var o = 0; o < outer; o++)
            for (var i = 0; i < half; i++)
                for (var k = 0; k < inner; k++)
                {
                    double a = x[(o * shape[d] + i) * inner + k], b = x[(o * shape[d] + i + half) * inner + k];
                    y[(o * half + i) * inner + k] = (float)(a * Sigmoid(b));
                }
        int[] outShape = [.. shape];
        outShape[d] = half;
        return Tensor.FromFloat32(y, outShape);
    }

    /// <summary>The logistic function <c>1 / (1 + e^-x)</c> in double.</summary>
    public static double Sigmoid(double v) => 1 / (1 + Math.Exp(-v));

    /// <summary>GELU by its definition <c>x·Φ(x) = x·erfc(−x/√2)/2</c> (erfc from MathNet: <c>1 + erf</c> would cancel to
    /// nothing in the negative tail), or PyTorch's tanh form.</summary>
    public static double Gelu(double v, bool tanh) => tanh
        ? 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)))
        : 0.5 * v * MathNet.Numerics.SpecialFunctions.Erfc(-v / Math.Sqrt(2));

    /// <summary>An element-wise function of double on every element.</summary>
    public static Tensor Map(Tensor x, Func<double, double> f)
        => Tensor.FromFloat32(x.ToArray().Select(v => (float)f(v)).ToArray(), x.Dimensions.ToArray());

    /// <summary><c>softmax(x, dim)</c>: <c>e^x / Σ e^x</c> along the dimension, by its definition.</summary>
    public static Tensor Softmax(Tensor input, int dim)
    {
        var shape = input.Dimensions.ToArray();
        var x = input.ToArray();
        var y = new float[x.Length];
        foreach (var idx in Indices(shape))
        {
            double sum = 0;
            var j = (int[])idx.Clone();
            for (var k = 0; k < shape[dim]; k++) { j[dim] = k; sum += Math.Exp(x[At(shape, j)]); }
            y[At(shape, idx)] = (float)(Math.Exp(x[At(shape, idx)]) / sum);
        }
        return Tensor.FromFloat32(y, shape);
    }

    /// <summary><c>layer_norm</c> over the last <paramref name="k"/> dimensions: (x − mean)/√(var + eps)·w + b, biased variance.</summary>
    public static Tensor LayerNorm(Tensor input, int k, Tensor? weight, Tensor? bias, double eps)
    {
        var x = input.ToArray();
        var row = 1;
        for (var i = input.Rank - k; i < input.Rank; i++) row *= input.Size(i);
        var y = new float[x.Length];
        for (var r = 0; r < x.Length / row; r++)
        {
            var values = x.Skip(r * row).Take(row).Select(v => (double)v).ToArray();
            var mean = values.Average();
            var variance = values.Select(v => (v - mean) * (v - mean)).Average();
            for (var i = 0; i < row; i++)
                y[r * row + i] = (float)((values[i] - mean) / Math.Sqrt(variance + eps)
                    * (weight is null ? 1 : weight.ToArray()[i]) + (bias is null ? 0 : bias.ToArray()[i]));
        }
        return Tensor.FromFloat32(y, input.Dimensions.ToArray());
    }

    /// <summary><c>x.mean(dims, keepdim)</c>: the average over every index of the reduced dimensions.</summary>
    public static Tensor Mean(Tensor input, int[] dims, bool keepdim)
    {
        var shape = input.Dimensions.ToArray();
        var reduced = dims.Select(d => d < 0 ? d + shape.Length : d).ToHashSet();
        var kept = Enumerable.Range(0, shape.Length).Select(d => reduced.Contains(d) ? 1 : shape[d]).ToArray();
        var sums = new double[kept.Aggregate(1, (a, b) => a * b)];
        var x = input.ToArray();
        foreach (var idx in Indices(shape))
            sums[At(kept, [.. idx.Select((v, d) => reduced.Contains(d) ? 0 : v)])] += x[At(shape, idx)];
        var n = reduced.Aggregate(1, (a, d) => a * shape[d]);
        var outShape = keepdim ? kept : [.. kept.Where((_, d) => !reduced.Contains(d))];
        return Tensor.FromFloat32(sums.Select(v => (float)(v / n)).ToArray(), outShape);
    }

    /// <summary><c>x.permute(dims)</c>: y[i] = x[i permuted back].</summary>
    public static Tensor Permute(Tensor input, int[] dims)
    {
        var shape = input.Dimensions.ToArray();
        var outShape = dims.Select(d => shape[d]).ToArray();
        var x = input.ToArray();
        var y = new float[x.Length];
        foreach (var idx in Indices(outShape))
        {
            var src = new int[shape.Length];
            for (var i = 0; i < dims.Length; i++) src[dims[i]] = idx[i];
            y[At(outShape, idx)] = x[At(shape, src)];
        }
        return Tensor.FromFloat32(y, outShape);
    }

    /// <summary>
    /// <c>x[starts[d] : starts[d] + counts[d]·steps[d] : steps[d]]</c> along every dimension (a basic slice), then the
    /// dimensions in <paramref name="drop"/> (indexed by an integer, count 1) removed.
    /// </summary>
    public static Tensor Slice(Tensor input, int[] starts, int[] counts, int[] steps, int[] drop)
    {
        var shape = input.Dimensions.ToArray();
        var x = input.ToArray();
        var y = new List<float>();
        foreach (var idx in Indices(counts))
            y.Add(x[At(shape, [.. idx.Select((v, d) => starts[d] + v * steps[d])])]);
        return Tensor.FromFloat32(y.ToArray(), [.. counts.Where((_, d) => !drop.Contains(d))]);
    }

    /// <summary>
    /// <c>torch.einsum(equation, a, b)</c> by its definition: every output element is the sum, over the letters the
    /// output does not name, of the product of the operands' elements the letters pick. Explicit output only.
    /// </summary>
    public static Tensor Einsum(string equation, Tensor a, Tensor b)
    {
        var text = string.Concat(equation.Where(c => !char.IsWhiteSpace(c)));
        var arrow = text.IndexOf("->", StringComparison.Ordinal);
        var parts = text[..arrow].Split(',');
        var output = text[(arrow + 2)..];
        var size = new Dictionary<char, int>();
        for (var d = 0; d < parts[0].Length; d++) size[parts[0][d]] = a.Size(d);
        for (var d = 0; d < parts[1].Length; d++) size[parts[1][d]] = b.Size(d);
        var summed = size.Keys.Where(c => !output.Contains(c)).ToArray();
        var outShape = output.Select(c => size[c]).ToArray();
        int[] sa = a.Dimensions.ToArray(), sb = b.Dimensions.ToArray();
        float[] x = a.ToArray(), w = b.ToArray();
        var y = new float[Math.Max(1, outShape.Aggregate(1, (p, n) => p * n))];
        foreach (var idx in Indices(outShape))
        {
            var at = new Dictionary<char, int>();
            for (var d = 0; d < output.Length; d++) at[output[d]] = idx[d];
            double sum = 0;
            foreach (var inner in Indices([.. summed.Select(c => size[c])]))
            {
                for (var d = 0; d < summed.Length; d++) at[summed[d]] = inner[d];
                sum += (double)x[At(sa, [.. parts[0].Select(c => at[c])])] * w[At(sb, [.. parts[1].Select(c => at[c])])];
            }
            y[At(outShape, idx)] = (float)sum;
        }
        return Tensor.FromFloat32(y, outShape);
    }

    /// <summary><c>a @ b</c> for <c>[B, M, K]</c> and <c>[B, K, N]</c> by the defining sums.</summary>
    public static Tensor BatchMatMul(Tensor a, Tensor b)
    {
        int batch = a.Size(0), m = a.Size(1), k = a.Size(2), n = b.Size(2);
        float[] x = a.ToArray(), w = b.ToArray();
        var y = new float[batch * m * n];
        for (var p = 0; p < batch; p++)
            for (var i = 0; i < m; i++)
                for (var j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (var t = 0; t < k; t++) sum += (double)x[(p * m + i) * k + t] * w[(p * k + t) * n + j];
                    y[(p * m + i) * n + j] = (float)sum;
                }
        return Tensor.FromFloat32(y, batch, m, n);
    }

    /// <summary>
    /// Multi-head self-attention of <c>x [N, L, E]</c> by its definition: q, k, v = x·W_{q,k,v}ᵀ + b; per head h of
    /// size d, <c>A = softmax(q_h·k_hᵀ/√d)</c> and <c>o_h = A·v_h</c>; the heads concatenated, then <c>·W_oᵀ + b_o</c>.
    /// </summary>
    public static Tensor SelfAttention(Tensor input, int heads, Tensor inWeight, Tensor inBias, Tensor outWeight, Tensor outBias)
    {
        int n = input.Size(0), l = input.Size(1), e = input.Size(2), d = e / heads;
        float[] x = input.ToArray(), wi = inWeight.ToArray(), bi = inBias.ToArray(), wo = outWeight.ToArray(), bo = outBias.ToArray();
        double Proj(int b, int t, int row)
        {
            double s = bi[row];
            for (var c = 0; c < e; c++) s += (double)x[(b * l + t) * e + c] * wi[row * e + c];
            return s;
        }
        var y = new float[n * l * e];
        for (var b = 0; b < n; b++)
        {
            var joined = new double[l, e];
            for (var h = 0; h < heads; h++)
                for (var i = 0; i < l; i++)
                {
                    var scores = new double[l];
                    for (var j = 0; j < l; j++)
                        for (var c = 0; c < d; c++) scores[j] += Proj(b, i, h * d + c) * Proj(b, j, e + h * d + c) / Math.Sqrt(d);
                    var total = scores.Sum(Math.Exp);
                    for (var j = 0; j < l; j++)
                        for (var c = 0; c < d; c++) joined[i, h * d + c] += Math.Exp(scores[j]) / total * Proj(b, j, 2 * e + h * d + c);
                }
            for (var i = 0; i < l; i++)
                for (var o = 0; o < e; o++)
                {
                    double s = bo[o];
                    for (var c = 0; c < e; c++) s += joined[i, c] * wo[o * e + c];
                    y[(b * l + i) * e + o] = (float)s;
                }
        }
        return Tensor.FromFloat32(y, n, l, e);
    }

    /// <summary>torchvision's <c>_patch_merging_pad</c> on <c>[B, H, W, C]</c>: zero-pad to even H, W; then x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] joined along C.</summary>
    public static Tensor PatchMergingPad(Tensor input)
    {
        int b = input.Size(0), h = input.Size(1), w = input.Size(2), c = input.Size(3), oh = (h + 1) / 2, ow = (w + 1) / 2;
        var x = input.ToArray();
        var y = new float[b * oh * ow * 4 * c];
        int[][] phases = [[0, 0], [1, 0], [0, 1], [1, 1]];
        foreach (var idx in Indices([b, oh, ow, 4, c]))
        {
            int yy = 2 * idx[1] + phases[idx[3]][0], xx = 2 * idx[2] + phases[idx[3]][1];
            y[Flat([b, oh, ow, 4, c], idx)] = yy < h && xx < w ? x[Flat([b, h, w, c], idx[0], yy, xx, idx[4])] : 0f;
        }
        return Tensor.FromFloat32(y, b, oh, ow, 4 * c);
    }

    /// <summary>
    /// torchvision 0.14's <c>shifted_window_attention</c> step by step in double: pad [B, H, W, C] to whole windows; roll
    /// by −shift (no shift on an axis one window covers); per window of N tokens and head, scores q·kᵀ/√d + bias[h]
    /// (plus −100 between tokens of different regions of the rolled map, regions cut at −window and −shift); softmax; ·v;
    /// the projection; roll back; crop. With Swin V2's <paramref name="logitScale"/> the scores are cosines
    /// q·k/(‖q‖‖k‖) times exp(min(logit_scale[h], ln 100)), and the key bias is zero.
    /// </summary>
    public static Tensor ShiftedWindowAttention(Tensor input, Tensor qkvWeight, Tensor? qkvBias, Tensor projWeight, Tensor? projBias,
        Tensor bias, int[] window, int heads, int[] shift, Tensor? logitScale = null)
    {
        int b = input.Size(0), h = input.Size(1), w = input.Size(2), c = input.Size(3), d = c / heads;
        int ph = (h + window[0] - 1) / window[0] * window[0], pw = (w + window[1] - 1) / window[1] * window[1];
        int sh = window[0] >= ph ? 0 : shift[0], sw = window[1] >= pw ? 0 : shift[1];
        var x = input.ToArray();
        // The padded map, rolled: rolled[y, x] = padded[(y + sh) % ph, (x + sw) % pw].
        var rolled = new double[b, ph, pw, c];
        foreach (var idx in Indices([b, ph, pw, c]))
        {
            int sy = (idx[1] + sh) % ph, sx = (idx[2] + sw) % pw;
            rolled[idx[0], idx[1], idx[2], idx[3]] = sy < h && sx < w ? x[Flat([b, h, w, c], idx[0], sy, sx, idx[3])] : 0;
        }
        static int Region(int p, int size, int win, int s) => s == 0 ? 0 : p < size - win ? 0 : p < size - s ? 1 : 2;
        double[] wq = [.. qkvWeight.ToArray().Select(v => (double)v)], wp = [.. projWeight.ToArray().Select(v => (double)v)];
        float[] bq = qkvBias?.ToArray() ?? new float[3 * c], bp = projBias?.ToArray() ?? new float[c], rb = bias.ToArray();
        if (logitScale is not null) Array.Clear(bq, c, c);
        var result = new double[b, ph, pw, c];
        int n = window[0] * window[1];
        for (var bi = 0; bi < b; bi++)
            for (var oy = 0; oy < ph; oy += window[0])
                for (var ox = 0; ox < pw; ox += window[1])
                {
                    var pos = Enumerable.Range(0, n).Select(t => (Y: oy + t / window[1], X: ox + t % window[1])).ToArray();
                    var qkv = new double[n, 3 * c];
                    for (var t = 0; t < n; t++)
                        for (var o = 0; o < 3 * c; o++)
                        {
                            double sum = bq[o];
                            for (var k = 0; k < c; k++) sum += wq[o * c + k] * rolled[bi, pos[t].Y, pos[t].X, k];
                            qkv[t, o] = sum;
                        }
                    var joined = new double[n, c];
                    for (var hd = 0; hd < heads; hd++)
                        for (var i = 0; i < n; i++)
                        {
                            var scores = new double[n];
                            double Norm(int t, int part) => Math.Sqrt(Enumerable.Range(0, d).Sum(k => qkv[t, part * c + hd * d + k] * qkv[t, part * c + hd * d + k]));
                            for (var j = 0; j < n; j++)
                            {
                                for (var k = 0; k < d; k++) scores[j] += qkv[i, hd * d + k] * qkv[j, c + hd * d + k];
                                scores[j] *= logitScale is null
                                    ? 1 / Math.Sqrt(d)
                                    : Math.Exp(Math.Min(logitScale.ToArray()[hd], Math.Log(100))) / (Math.Max(Norm(i, 0), 1e-12) * Math.Max(Norm(j, 1), 1e-12)); // F.normalize's eps: a padded token's key is zero
                                scores[j] += rb[(hd * n + i) * n + j];
                                var ri = Region(pos[i].Y, ph, window[0], sh) * 3 + Region(pos[i].X, pw, window[1], sw);
                                var rj = Region(pos[j].Y, ph, window[0], sh) * 3 + Region(pos[j].X, pw, window[1], sw);
                                if (sh + sw > 0 && ri != rj) scores[j] -= 100;
                            }
                            var max = scores.Max();
                            var total = scores.Sum(v => Math.Exp(v - max));
                            for (var j = 0; j < n; j++)
                                for (var k = 0; k < d; k++) joined[i, hd * d + k] += Math.Exp(scores[j] - max) / total * qkv[j, 2 * c + hd * d + k];
                        }
                    for (var t = 0; t < n; t++)
                        for (var o = 0; o < c; o++)
                        {
                            double sum = bp[o];
                            for (var k = 0; k < c; k++) sum += wp[o * c + k] * joined[t, k];
                            result[bi, pos[t].Y, pos[t].X, o] = sum;
                        }
                }
        // Roll back and crop: out[y, x] = result[(y − sh) mod ph, (x − sw) mod pw].
        var y = new float[x.Length];
        foreach (var idx in Indices([b, h, w, c]))
            y[Flat([b, h, w, c], idx)] = (float)result[idx[0], ((idx[1] - sh) % ph + ph) % ph, ((idx[2] - sw) % pw + pw) % pw, idx[3]];
        return Tensor.FromFloat32(y, b, h, w, c);
    }
}
