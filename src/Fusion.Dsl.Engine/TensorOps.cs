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

    /// <summary>
    /// <c>a op b</c> with PyTorch's broadcasting (trailing dimensions aligned; size 1 stretches). The output is cut into rows
    /// along which both operands advance by 0 or 1 (<see cref="Rows"/>), and blocks of rows are shared among the threads:
    /// a squeeze-excitation's <c>[N, C, H, W] * [N, C, 1, 1]</c> is one vector times one number per plane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Tensor Apply(Binary op, Tensor a, Tensor b, Pass pass)
    {
        var shape = BroadcastShape(a.Shape, b.Shape);
        var count = Tensor.Product(shape);
        var output = pass.Output(count);
        float[] x = a.RawFloat32, y = b.RawFloat32;
        if (count == 0) return Tensor.Adopt(output, shape);
        var rows = Rows.Of(shape, a.Shape, b.Shape);
        if (rows.Length >= Chunk)
        {
            // Long rows (same shapes are one row): pieces of a row are the work items.
            var pieces = (rows.Length + Chunk - 1) / Chunk;
            Par.For(rows.Count * pieces, pass.Threads, Chunk, (int item) =>
            {
                var r = item / pieces;
                var j = (item - r * pieces) * Chunk;
                var (ia, ib) = rows.Start(r, out _);
                fixed (float* px = x, py = y, pd = output)
                    Run(op, px + ia + j * rows.StepA, rows.StepA, py + ib + j * rows.StepB, rows.StepB,
                        pd + (long)r * rows.Length + j, Math.Min(Chunk, rows.Length - j));
            });
            return Tensor.Adopt(output, shape);
        }
        // Short rows: blocks of rows are the work items.
        var perBlock = Chunk / rows.Length;
        var blocks = (rows.Count + perBlock - 1) / perBlock;
        Par.For(blocks, pass.Threads, (long)perBlock * rows.Length, (int block) =>
        {
            var r0 = block * perBlock;
            var r1 = Math.Min(rows.Count, r0 + perBlock);
            var (ia, ib) = rows.Start(r0, out var idx);
            fixed (float* px = x, py = y, pd = output)
                for (var r = r0; r < r1; r++)
                {
                    Run(op, px + ia, rows.StepA, py + ib, rows.StepB, pd + (long)r * rows.Length, rows.Length);
                    rows.Advance(idx, ref ia, ref ib);
                }
        });
        return Tensor.Adopt(output, shape);
    }

    /// <summary>
    /// A broadcast output as <see cref="Count"/> rows of <see cref="Length"/> elements: the shape with its size-1
    /// dimensions dropped and neighbours merged wherever both operands step through them as one dimension. Along a row
    /// each operand steps by 1 or stays (0); from row to row, by the outer dimensions' strides.
    /// </summary>
    private sealed class Rows
    {
        private readonly int[] _outer, _strideA, _strideB;

        private Rows(int[] outer, int[] strideA, int[] strideB, int length, int stepA, int stepB)
        {
            (_outer, _strideA, _strideB, Length, StepA, StepB) = (outer, strideA, strideB, length, stepA, stepB);
            Count = 1;
            foreach (var n in outer) Count *= n;
        }

        public int Length { get; }
        public int Count { get; }
        public int StepA { get; }
        public int StepB { get; }

        public static Rows Of(int[] shape, ReadOnlySpan<int> a, ReadOnlySpan<int> b)
        {
            var sa = Broadcast.Strides(a, shape.Length);
            var sb = Broadcast.Strides(b, shape.Length);
            var dims = new List<(int Size, int A, int B)>();
            for (var d = 0; d < shape.Length; d++)
            {
                if (shape[d] == 1) continue;
                // Merge into the previous dimension when both operands step through the pair as through one dimension.
                if (dims.Count > 0 && dims[^1].A == sa[d] * shape[d] && dims[^1].B == sb[d] * shape[d])
                    dims[^1] = (dims[^1].Size * shape[d], sa[d], sb[d]);
                else dims.Add((shape[d], sa[d], sb[d]));
            }
            // One element (every size 1): a row of one, both operands at their only element.
            if (dims.Count == 0) return new Rows([], [], [], 1, 0, 0);
            var inner = dims[^1];
            dims.RemoveAt(dims.Count - 1);
            return new Rows([.. dims.Select(d => d.Size)], [.. dims.Select(d => d.A)], [.. dims.Select(d => d.B)], inner.Size, inner.A, inner.B);
        }

        /// <summary>Where row <paramref name="row"/> starts in each operand, and its outer index for <see cref="Advance"/>.</summary>
        public (long A, long B) Start(int row, out int[] idx)
        {
            idx = new int[_outer.Length];
            long ia = 0, ib = 0;
            for (var d = _outer.Length - 1; d >= 0; d--)
            {
                idx[d] = row % _outer[d];
                row /= _outer[d];
                ia += (long)idx[d] * _strideA[d];
                ib += (long)idx[d] * _strideB[d];
            }
            return (ia, ib);
        }

        /// <summary>Moves the offsets to the next row.</summary>
        public void Advance(int[] idx, ref long ia, ref long ib)
        {
            for (var d = _outer.Length - 1; d >= 0; d--)
            {
                idx[d]++;
                ia += _strideA[d];
                ib += _strideB[d];
                if (idx[d] < _outer[d]) return;
                ia -= (long)_strideA[d] * _outer[d];
                ib -= (long)_strideB[d] * _outer[d];
                idx[d] = 0;
            }
        }
    }

    /// <summary>
    /// <paramref name="n"/> results of <c>x op y</c> where each operand steps by 1 or stays at one element (step 0). The
    /// vector and scalar forms are the same IEEE operation, so the bits do not depend on where a row starts.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run(Binary op, float* x, int stepX, float* y, int stepY, float* d, int n)
    {
        if (stepX == 1 && stepY == 1) { Same(op, x, y, d, n); return; }
        if (stepX == 0 && stepY == 0) { for (var j = 0; j < n; j++) d[j] = Op(op, x[0], y[0]); return; }
        var i = 0;
        if (stepY == 0)
        {
            var v = Vector256.Create(y[0]);
            for (; i <= n - 8; i += 8) Vector256.Store(Op(op, Vector256.Load(x + i), v), d + i);
            for (; i < n; i++) d[i] = Op(op, x[i], y[0]);
        }
        else
        {
            var u = Vector256.Create(x[0]);
            for (; i <= n - 8; i += 8) Vector256.Store(Op(op, u, Vector256.Load(y + i)), d + i);
            for (; i < n; i++) d[i] = Op(op, x[0], y[i]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Op(Binary op, Vector256<float> u, Vector256<float> v)
        => op switch { Binary.Add => u + v, Binary.Mul => u * v, Binary.Sub => u - v, _ => u / v };

    /// <summary><c>d[i] = x[i] op y[i]</c> over <paramref name="count"/> values; <paramref name="d"/> may be either input.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Same(Binary op, float* x, float* y, float* d, int count)
    {
        var i = 0;
        for (; i <= count - 8; i += 8) Vector256.Store(Op(op, Vector256.Load(x + i), Vector256.Load(y + i)), d + i);
        for (; i < count; i++) d[i] = Op(op, x[i], y[i]);
    }

    /// <summary><c>a op scalar</c>, or <c>scalar op a</c> when <paramref name="scalarFirst"/> (the scalar is taken as
    /// float32, as PyTorch does for a float tensor).</summary>
    public static Tensor Apply(Binary op, Tensor a, double scalar, Pass pass, bool scalarFirst = false)
    {
        var s = (float)scalar;
        var src = a.RawFloat32;
        var output = pass.Output(src.Length);
        var chunks = (src.Length + Chunk - 1) / Chunk;
        Par.For(chunks, pass.Threads, Chunk, (int i) =>
        {
            var start = i * Chunk;
            var len = Math.Min(Chunk, src.Length - start);
            var number = s;
            fixed (float* ps = src, pd = output)
                if (scalarFirst) Run(op, &number, 0, ps + start, 1, pd + start, len);
                else Run(op, ps + start, 1, &number, 0, pd + start, len);
        });
        return Tensor.Adopt(output, a.Shape.ToArray());
    }

    /// <summary><see cref="Broadcast.Shape"/>, refusing shapes that do not broadcast as an input error.</summary>
    public static int[] BroadcastShape(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
        => Broadcast.Shape(a, b) ?? throw new EngineInputException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)} do not broadcast");

    /// <summary>A dimension index with negatives counted from the end; <paramref name="rank"/> is the number of valid positions.</summary>
    public static int Dim(long dim, int rank, string what)
        => Dimensions.Wrap(dim, rank)
           ?? throw new EngineInputException($"{what}: dimension {dim} is out of range for a tensor of rank {rank} (expected [{-Math.Max(rank, 1)}, {Math.Max(rank, 1) - 1}])");

    /// <summary>The forward of <c>Flatten</c>.</summary>
    [LayerForward("Flatten")]
    public static Tensor FlattenForward(Evaluator ev, Layers.Flatten m, Tensor x) => Flatten(x, m.StartDim, m.EndDim);

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
