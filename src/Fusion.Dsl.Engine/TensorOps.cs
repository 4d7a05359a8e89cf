using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>The element-wise and shape operations the forward graphs use, with PyTorch's broadcasting and dimension rules.</summary>
internal static unsafe class TensorOps
{
    /// <summary>Elements per work item of the element-wise operations (64 KiB of floats: cache-sized, enough to amortise a task).</summary>
    private const int Chunk = 1 << 14;

    /// <summary>An activation over every element; with <paramref name="inPlace"/>, into <paramref name="x"/> itself (which
    /// must be a buffer the caller owns).</summary>
    public static Tensor Activation(Tensor x, Act act, Pass pass, bool inPlace = false)
    {
        var output = inPlace ? x.RawFloat32 : pass.Output(x.Count);
        var src = x.RawFloat32;
        var chunks = (x.Count + Chunk - 1) / Chunk;
        Par.For(chunks, pass.Threads, Chunk, (int i) =>
        {
            var start = i * Chunk;
            var len = Math.Min(Chunk, src.Length - start);
            fixed (float* s = src, d = output) Epilogue.ApplyRun(s + start, d + start, len, 1f, 0f, false, act);
        });
        return inPlace ? x : Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary>Binary operations with broadcasting.</summary>
    public enum Binary { Add, Mul, Sub, Div }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Op(Binary op, float x, float y) => op switch
    {
        Binary.Add => x + y,
        Binary.Mul => x * y,
        Binary.Sub => x - y,
        _ => x / y,
    };

    /// <summary><c>a op b</c> with PyTorch's broadcasting (trailing dimensions aligned; size 1 stretches).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Tensor Apply(Binary op, Tensor a, Tensor b, Pass pass)
    {
        var shape = BroadcastShape(a.Shape, b.Shape);
        var count = Tensor.Product(shape);
        var output = pass.Output(count);
        float[] x = a.RawFloat32, y = b.RawFloat32;
        if (a.Shape.SequenceEqual(b.Shape))
        {
            var chunks = (count + Chunk - 1) / Chunk;
            Par.For(chunks, pass.Threads, Chunk, (int i) =>
            {
                var start = i * Chunk;
                fixed (float* px = x, py = y, pd = output) Same(op, px + start, py + start, pd + start, Math.Min(Chunk, count - start));
            });
        }
        else
        {
            var rank = shape.Length;
            var sa = Broadcast.Strides(a.Shape, rank);
            var sb = Broadcast.Strides(b.Shape, rank);
            var idx = new int[rank];
            long ia = 0, ib = 0;
            for (var i = 0; i < count; i++)
            {
                output[i] = Op(op, x[ia], y[ib]);
                for (var d = rank - 1; d >= 0; d--)
                {
                    idx[d]++;
                    ia += sa[d];
                    ib += sb[d];
                    if (idx[d] < shape[d]) break;
                    ia -= (long)sa[d] * shape[d];
                    ib -= (long)sb[d] * shape[d];
                    idx[d] = 0;
                }
            }
        }
        return Tensor.Adopt(output, shape);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Same(Binary op, float* x, float* y, float* d, int count)
    {
        var i = 0;
        for (; i <= count - 8; i += 8)
        {
            var u = Vector256.Load(x + i);
            var v = Vector256.Load(y + i);
            Vector256.Store(op switch { Binary.Add => u + v, Binary.Mul => u * v, Binary.Sub => u - v, _ => u / v }, d + i);
        }
        for (; i < count; i++) d[i] = Op(op, x[i], y[i]);
    }

    /// <summary><c>a op scalar</c>, or <c>scalar op a</c> when <paramref name="scalarFirst"/> (the scalar is taken as
    /// float32, as PyTorch does for a float tensor).</summary>
    public static Tensor Apply(Binary op, Tensor a, double scalar, Pass pass, bool scalarFirst = false)
    {
        var s = (float)scalar;
        var src = a.RawFloat32;
        var output = pass.Output(src.Length);
        for (var i = 0; i < src.Length; i++) output[i] = scalarFirst ? Op(op, s, src[i]) : Op(op, src[i], s);
        return Tensor.Adopt(output, a.Shape.ToArray());
    }

    /// <summary><see cref="Broadcast.Shape"/>, refusing shapes that do not broadcast as an input error.</summary>
    public static int[] BroadcastShape(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
        => Broadcast.Shape(a, b) ?? throw new EngineInputException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)} do not broadcast");

    /// <summary>A dimension index with negatives counted from the end; <paramref name="rank"/> is the number of valid positions.</summary>
    public static int Dim(long dim, int rank, string what)
        => Dimensions.Wrap(dim, rank)
           ?? throw new EngineInputException($"{what}: dimension {dim} is out of range for a tensor of rank {rank} (expected [{-Math.Max(rank, 1)}, {Math.Max(rank, 1) - 1}])");

    /// <summary><c>torch.flatten(x, start_dim, end_dim)</c>; a scalar becomes a one-element vector.</summary>
    public static Tensor Flatten(Tensor x, long startDim, long endDim)
    {
        if (x.Rank == 0) return x.Reshape(1);
        var s = Dim(startDim, x.Rank, "flatten");
        var e = Dim(endDim, x.Rank, "flatten");
        if (s > e) throw new EngineInputException($"flatten: start_dim ({startDim}) must not come after end_dim ({endDim})");
        var shape = new List<int>();
        for (var i = 0; i < s; i++) shape.Add(x.Size(i));
        var merged = 1;
        for (var i = s; i <= e; i++) merged *= x.Size(i);
        shape.Add(merged);
        for (var i = e + 1; i < x.Rank; i++) shape.Add(x.Size(i));
        return x.Reshape([.. shape]);
    }

    /// <summary><c>x.squeeze()</c> (every size-1 dimension) or <c>x.squeeze(dim)</c> (that one, if it has size 1).</summary>
    public static Tensor Squeeze(Tensor x, long? dim)
    {
        if (dim is null) return x.Reshape([.. x.Dimensions.Where(d => d != 1)]);
        if (x.Rank == 0) { Dim(dim.Value, 0, "squeeze"); return x; }
        var d = Dim(dim.Value, x.Rank, "squeeze");
        if (x.Size(d) != 1) return x;
        var shape = x.Dimensions.ToList();
        shape.RemoveAt(d);
        return x.Reshape([.. shape]);
    }

    /// <summary><c>x.unsqueeze(dim)</c>, dim in <c>[-rank-1, rank]</c>.</summary>
    public static Tensor Unsqueeze(Tensor x, long dim)
    {
        var d = Dim(dim, x.Rank + 1, "unsqueeze");
        var shape = x.Dimensions.ToList();
        shape.Insert(d, 1);
        return x.Reshape([.. shape]);
    }

    /// <summary><c>reshape</c>/<c>view</c> with one inferred <c>-1</c>.</summary>
    public static Tensor Reshape(Tensor x, int[] shape)
    {
        try { return x.Reshape(shape); }
        catch (ArgumentException e) { throw new EngineInputException($"reshape of {Tensor.ShapeString(x.Shape)}: {e.Message}"); }
    }

    /// <summary><c>torch.cat(tensors, dim)</c>.</summary>
    public static Tensor Cat(IReadOnlyList<Tensor> parts, long dim, Pass pass)
    {
        if (parts.Count == 0) throw new EngineInputException("cat: expected a non-empty list of tensors");
        var first = parts[0];
        var d = Dim(dim, first.Rank, "cat");
        var total = 0;
        foreach (var p in parts)
        {
            if (p.Rank != first.Rank)
                throw new EngineInputException($"cat: tensors must have the same rank, got {Tensor.ShapeString(first.Shape)} and {Tensor.ShapeString(p.Shape)}");
            for (var i = 0; i < p.Rank; i++)
                if (i != d && p.Size(i) != first.Size(i))
                    throw new EngineInputException($"cat: sizes must match except in dimension {d}, got {Tensor.ShapeString(first.Shape)} and {Tensor.ShapeString(p.Shape)}");
            total += p.Size(d);
        }
        var shape = first.Dimensions.ToArray();
        shape[d] = total;
        var outer = 1;
        for (var i = 0; i < d; i++) outer *= shape[i];
        var inner = 1;
        for (var i = d + 1; i < shape.Length; i++) inner *= shape[i];
        var output = pass.Output(Tensor.Product(shape));
        var offset = 0;
        foreach (var p in parts)
        {
            var block = p.Size(d) * inner;
            var src = p.Float32;
            for (var o = 0; o < outer; o++)
                src.Slice(o * block, block).CopyTo(output.AsSpan(o * total * inner + offset, block));
            offset += block;
        }
        return Tensor.Adopt(output, shape);
    }
}
