using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The Swin Transformer's window operations, which torchvision marks as leaves of its trace
/// (<c>torchvision.models.swin_transformer</c>'s <c>shifted_window_attention</c>, <c>_get_relative_position_bias</c>,
/// <c>_patch_merging_pad</c>), computed as torchvision 0.14 defines them: the map padded to whole windows, cyclically
/// shifted, cut into windows, attended within each window (with the relative position bias, and the mask that keeps
/// regions the shift brought together apart), and put back; Swin V2's cosine attention too (<c>logit_scale</c>). Dropout
/// that applies is refused as unsupported.
/// </summary>
internal static class WindowAttention
{
    /// <summary>The value torchvision's mask adds to the scores of token pairs from different shifted regions.</summary>
    private const float MaskedScore = -100f;

    /// <summary>
    /// <c>_get_relative_position_bias(table, index, window_size)</c>: <c>table[index]</c> as <c>[1, heads, N, N]</c> for
    /// N = window height · width; <paramref name="index"/> holds int64 rows of the table.
    /// </summary>
    public static Tensor RelativePositionBias(Tensor table, Tensor index, int[] window)
    {
        if (window.Length != 2 || window.Any(w => w <= 0))
            throw new EngineInputException($"relative position bias: window_size must be two positive sizes, got {Tensor.ShapeString(window)}");
        var n = checked(window[0] * window[1]);
        if (table.Rank != 2 || table.DType != DType.Float32)
            throw new EngineInputException($"relative position bias: the table must be a float32 [rows, heads], got {table.DType} {Tensor.ShapeString(table.Shape)}");
        if (index.DType != DType.Int64 || index.Count != (long)n * n)
            throw new EngineInputException($"relative position bias: the index must hold {n}x{n} int64 rows for window {Tensor.ShapeString(window)}, got {index.DType} {Tensor.ShapeString(index.Shape)}");
        int rows = table.Size(0), heads = table.Size(1);
        var idx = index.Int64;
        var t = table.Float32;
        var output = Pass.Fresh(checked(heads * n * n));
        for (var p = 0; p < n * n; p++)
        {
            var row = idx[p];
            if (row < 0 || row >= rows)
                throw new EngineInputException($"relative position bias: index {row} at position {p} is outside the table's {rows} rows");
            for (var h = 0; h < heads; h++) output[h * n * n + p] = t[(int)row * heads + h];
        }
        return Tensor.Adopt(output, [1, heads, n, n]);
    }

    /// <summary>
    /// <c>_patch_merging_pad(x)</c> on <c>[..., H, W, C]</c>: H and W padded with zeros to even sizes, then the four
    /// 2x2 phases (0,0), (1,0), (0,1), (1,1) joined along C: <c>[..., ⌈H/2⌉, ⌈W/2⌉, 4C]</c>.
    /// </summary>
    public static Tensor PatchMergingPad(Tensor x)
    {
        if (x.Rank < 3) throw new EngineInputException($"patch merging: expected [..., H, W, C], got {Tensor.ShapeString(x.Shape)}");
        int h = x.Size(-3), w = x.Size(-2), c = x.Size(-1);
        int oh = (h + 1) / 2, ow = (w + 1) / 2;
        var lead = x.Count == 0 ? 0 : x.Count / (h * w * c);
        var shape = x.Shape.ToArray();
        shape[^3] = oh; shape[^2] = ow; shape[^1] = checked(4 * c);
        var output = Pass.Fresh(Tensor.Product(shape));
        var src = x.RawFloat32;
        (int Dy, int Dx)[] phases = [(0, 0), (1, 0), (0, 1), (1, 1)];
        for (var b = 0; b < lead; b++)
            for (var i = 0; i < oh; i++)
                for (var j = 0; j < ow; j++)
                    for (var q = 0; q < 4; q++)
                    {
                        int sy = 2 * i + phases[q].Dy, sx = 2 * j + phases[q].Dx;
                        var dst = output.AsSpan((((b * oh + i) * ow + j) * 4 + q) * c, c);
                        if (sy < h && sx < w) src.AsSpan(((b * h + sy) * w + sx) * c, c).CopyTo(dst);
                        else dst.Clear();
                    }
        return Tensor.Adopt(output, shape);
    }

    /// <summary>The arguments of one <c>shifted_window_attention</c> call.</summary>
    public sealed record Call(Tensor Input, Tensor QkvWeight, Tensor ProjWeight, Tensor Bias, int[] Window, int Heads, int[] Shift,
        Tensor? QkvBias, Tensor? ProjBias, Tensor? LogitScale);

    /// <summary><c>shifted_window_attention(...)</c> on <c>[B, H, W, C]</c>, as torchvision 0.14 computes it.</summary>
    public static Tensor ShiftedWindowAttention(Evaluator ev, Call a)
    {
        var x = a.Input;
        if (x.Rank != 4) throw new EngineInputException($"shifted window attention: expected [B, H, W, C], got {Tensor.ShapeString(x.Shape)}");
        int b = x.Size(0), h = x.Size(1), w = x.Size(2), c = x.Size(3);
        if (a.Window.Length != 2 || a.Shift.Length != 2 || a.Window.Any(v => v <= 0) || a.Shift.Any(v => v < 0))
            throw new EngineInputException($"shifted window attention: window_size and shift_size must be two sizes each, got {Tensor.ShapeString(a.Window)} and {Tensor.ShapeString(a.Shift)}");
        if (a.Heads <= 0 || c % a.Heads != 0)
            throw new EngineInputException($"shifted window attention: {c} channels do not split into {a.Heads} heads");
        int wh = a.Window[0], ww = a.Window[1];
        int ph = (h + wh - 1) / wh * wh, pw = (w + ww - 1) / ww * ww;
        // As torchvision: no shift along an axis that one window covers.
        int sh = wh >= ph ? 0 : a.Shift[0], sw = ww >= pw ? 0 : a.Shift[1];
        if (sh >= ph || sw >= pw) throw new EngineInputException($"shifted window attention: shift {Tensor.ShapeString(a.Shift)} reaches past the padded map [{ph}, {pw}]");
        int gy = ph / wh, gx = pw / ww, windows = gy * gx, n = wh * ww, d = c / a.Heads;
        if (!a.Bias.Shape.SequenceEqual([1, a.Heads, n, n]))
            throw new EngineInputException($"shifted window attention: the relative position bias must be [1, {a.Heads}, {n}, {n}], got {Tensor.ShapeString(a.Bias.Shape)}");
        // Where window token (b, wy, wx, t) reads in the padded, shifted map: the roll by -shift reads shift ahead.
        int Source(int wy, int wx, int t)
        {
            int sy = (wy * wh + t / ww + sh) % ph, sx = (wx * ww + t % ww + sw) % pw;
            return sy < h && sx < w ? (sy * w + sx) * c : -1;
        }
        var src = x.RawFloat32;
        var cut = Pass.Fresh(checked(b * windows * n * c));
        for (var bi = 0; bi < b; bi++)
            for (var win = 0; win < windows; win++)
                for (var t = 0; t < n; t++)
                {
                    var at = Source(win / gx, win % gx, t);
                    var dst = cut.AsSpan(((bi * windows + win) * n + t) * c, c);
                    if (at < 0) dst.Clear(); else src.AsSpan(bi * h * w * c + at, c).CopyTo(dst);
                }
        var qkvBias = a.QkvBias;
        if (a.LogitScale is not null && qkvBias is not null)
        {
            // Swin V2 has no key bias: torchvision zeroes the middle third of a copy.
            if (qkvBias.Count != 3 * c || qkvBias.DType != DType.Float32)
                throw new EngineInputException($"shifted window attention: qkv_bias must be a float32 of {3 * c} elements, got {Tensor.ShapeString(qkvBias.Shape)}");
            var copy = qkvBias.ToArray();
            Array.Clear(copy, c, c);
            qkvBias = Tensor.Adopt(copy, [3 * c]);
        }
        var qkv = Attention.Project(ev, a.QkvWeight, qkvBias, Tensor.Adopt(cut, [b * windows, n, c]), "shifted window attention qkv");
        if (qkv.Size(-1) != 3 * c) throw new EngineInputException($"shifted window attention: qkv_weight must have {3 * c} rows, got {a.QkvWeight.Size(0)}");
        var parts = ShapeKernels.Permute(qkv.Reshape(b * windows, n, 3, a.Heads, d), [2, 0, 3, 1, 4]);
        Tensor Part(int i) => ShapeKernels.Index(parts, (long)i);
        var scores = a.LogitScale is null
            ? MatMulKernels.MatMul(TensorOps.Apply(TensorOps.Binary.Mul, Part(0), Math.Pow(d, -0.5), ev.Pass), ShapeKernels.Transpose(Part(1), -2, -1), ev.Pass)
            : CosineScores(ev, Part(0), Part(1), a.LogitScale, a.Heads);
        scores = TensorOps.Apply(TensorOps.Binary.Add, scores, a.Bias, ev.Pass);
        // torchvision draws its regions on the shifted map: slices (0, -window), (-window, -shift), (-shift, None) of
        // each axis, the last covering the whole axis when that axis is not shifted.
        static int Region(int p, int size, int window, int shift) => shift == 0 ? 0 : p < size - window ? 0 : p < size - shift ? 1 : 2;
        if (sh + sw > 0)
            Mask(scores.RawFloat32, b * windows, windows, a.Heads, n,
                (win, t) => Region(win / gx * wh + t / ww, ph, wh, sh) * 3 + Region(win % gx * ww + t % ww, pw, ww, sw));
        var attn = ReduceKernels.Softmax(scores, -1, ev.Pass);
        var joined = ShapeKernels.Transpose(MatMulKernels.MatMul(attn, Part(2), ev.Pass), 1, 2).Reshape(b * windows, n, c);
        var y = Attention.Project(ev, a.ProjWeight, a.ProjBias, joined, "shifted window attention proj").RawFloat32;
        // Windows back into the map, the shift undone and the padding cut off: each in-map token goes home.
        var output = Pass.Fresh(x.Count);
        for (var bi = 0; bi < b; bi++)
            for (var win = 0; win < windows; win++)
                for (var t = 0; t < n; t++)
                {
                    var at = Source(win / gx, win % gx, t);
                    if (at >= 0) y.AsSpan(((bi * windows + win) * n + t) * c, c).CopyTo(output.AsSpan(bi * h * w * c + at, c));
                }
        return Tensor.Adopt(output, [b, h, w, c]);
    }

    /// <summary>
    /// Swin V2's scores: <c>normalize(q)·normalize(k)ᵀ · exp(min(logit_scale[h], ln 100))</c>, per head h
    /// (<c>logit_scale</c> is <c>[heads, 1, 1]</c>).
    /// </summary>
    private static Tensor CosineScores(Evaluator ev, Tensor q, Tensor k, Tensor logitScale, int heads)
    {
        if (logitScale.DType != DType.Float32 || logitScale.Count != heads)
            throw new EngineInputException($"shifted window attention: logit_scale must hold one float32 per head ({heads}), got {logitScale.DType} {Tensor.ShapeString(logitScale.Shape)}");
        var scale = logitScale.ToArray().Select(v => (double)MathF.Exp(MathF.Min(v, MathF.Log(100f)))).ToArray();
        var cosines = MatMulKernels.MatMul(ReduceKernels.Normalize(q), ShapeKernels.Transpose(ReduceKernels.Normalize(k), -2, -1), ev.Pass);
        var perHead = Tensor.Adopt(scale.Select(v => (float)v).ToArray(), [heads, 1, 1]);
        return TensorOps.Apply(TensorOps.Binary.Mul, cosines, perHead, ev.Pass);
    }

    /// <summary>Adds −100 to the score of every token pair of a window whose shifted regions differ.</summary>
    private static void Mask(float[] scores, int batches, int windows, int heads, int n, Func<int, int, int> region)
    {
        var regions = new int[windows, n];
        for (var win = 0; win < windows; win++)
            for (var t = 0; t < n; t++) regions[win, t] = region(win, t);
        for (var bw = 0; bw < batches; bw++)
        {
            var win = bw % windows;
            for (var hd = 0; hd < heads; hd++)
                for (var i = 0; i < n; i++)
                    for (var j = 0; j < n; j++)
                        if (regions[win, i] != regions[win, j]) scores[((bw * heads + hd) * n + i) * n + j] += MaskedScore;
        }
    }
}
