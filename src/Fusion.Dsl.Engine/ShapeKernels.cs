using Fusion.Dsl.Graphs;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The layout operations PyTorch answers with views (<c>permute</c>, <c>transpose</c>, <c>expand</c>, indexing,
/// <c>chunk</c>, <c>split</c>). Tensors here are always contiguous, so each result is a copy: one strided gather that
/// reads the input through the view's strides. Every index and size is checked against the input before the copy.
/// </summary>
internal static class ShapeKernels
{
    /// <summary><c>x.permute(dims)</c>: dims must be a permutation of the input's dimensions.</summary>
    public static Tensor Permute(Tensor x, int[] dims)
    {
        if (dims.Length != x.Rank)
            throw new EngineInputException($"permute: {dims.Length} dimensions given ({Tensor.ShapeString(dims)}) for a tensor of rank {x.Rank}");
        var order = dims.Select(d => TensorOps.Dim(d, x.Rank, "permute")).ToArray();
        if (order.Distinct().Count() != order.Length)
            throw new EngineInputException($"permute: dims {Tensor.ShapeString(dims)} repeat a dimension");
        var strides = Strides(x.Shape);
        return Gather(x, 0, [.. order.Select(d => x.Size(d))], [.. order.Select(d => strides[d])]);
    }

    /// <summary><c>x.transpose(dim0, dim1)</c>.</summary>
    public static Tensor Transpose(Tensor x, long dim0, long dim1)
    {
        var order = Enumerable.Range(0, x.Rank).ToArray();
        if (x.Rank == 0) { TensorOps.Dim(dim0, 0, "transpose"); TensorOps.Dim(dim1, 0, "transpose"); return x; }
        var a = TensorOps.Dim(dim0, x.Rank, "transpose");
        var b = TensorOps.Dim(dim1, x.Rank, "transpose");
        (order[a], order[b]) = (order[b], order[a]);
        return Permute(x, order);
    }

    /// <summary><c>x.expand(sizes)</c>: new leading dimensions, size-1 dimensions stretched, -1 keeps a size.</summary>
    public static Tensor Expand(Tensor x, int[] sizes)
    {
        if (sizes.Length < x.Rank)
            throw new EngineInputException($"expand: {sizes.Length} sizes ({Tensor.ShapeString(sizes)}) for a tensor of rank {x.Rank}; give at least {x.Rank}");
        var lead = sizes.Length - x.Rank;
        var shape = new int[sizes.Length];
        var strides = new long[sizes.Length];
        var own = Strides(x.Shape);
        for (var i = 0; i < sizes.Length; i++)
        {
            var have = i < lead ? -1 : x.Size(i - lead);
            var want = sizes[i];
            if (want == -1 && have >= 0) { shape[i] = have; strides[i] = own[i - lead]; continue; }
            if (want < 0 || (have >= 0 && have != 1 && have != want))
                throw new EngineInputException($"expand: cannot expand {Tensor.ShapeString(x.Shape)} to {Tensor.ShapeString(sizes)} (dimension {i}: {(have < 0 ? "new" : have.ToString(System.Globalization.CultureInfo.InvariantCulture))} to {want})");
            shape[i] = want;
            strides[i] = have == want ? own[i - lead] : 0;
        }
        return Gather(x, 0, shape, strides);
    }

    /// <summary><c>torch.chunk(x, chunks, dim)</c>: pieces of ⌈size/chunks⌉ along dim (the last may be smaller; fewer pieces when they run out).</summary>
    public static Tensor[] Chunk(Tensor x, long chunks, long dim)
    {
        if (chunks <= 0) throw new EngineInputException($"chunk: chunks must be positive, got {chunks}");
        var d = TensorOps.Dim(dim, x.Rank, "chunk");
        var size = x.Size(d);
        var step = (int)Math.Max(1, (size + chunks - 1) / chunks);
        return Split(x, step, d);
    }

    /// <summary><c>torch.split(x, split_size, dim)</c>: pieces of split_size along dim (the last may be smaller).</summary>
    public static Tensor[] Split(Tensor x, long splitSize, long dim)
    {
        var d = TensorOps.Dim(dim, x.Rank, "split");
        if (splitSize <= 0) throw new EngineInputException($"split: split_size must be positive, got {splitSize}");
        var size = x.Size(d);
        var sections = new List<int>();
        for (long start = 0; start < size; start += splitSize) sections.Add((int)Math.Min(splitSize, size - start));
        return Sections(x, sections.Count == 0 ? [0] : [.. sections], d);
    }

    /// <summary><c>torch.split(x, [sizes], dim)</c>: pieces of the given sizes, which must add up to the dimension.</summary>
    public static Tensor[] Sections(Tensor x, int[] sizes, long dim)
    {
        var d = TensorOps.Dim(dim, x.Rank, "split");
        if (sizes.Any(s => s < 0) || sizes.Sum(s => (long)s) != x.Size(d))
            throw new EngineInputException($"split: sizes {Tensor.ShapeString(sizes)} must be non-negative and add up to dimension {d}'s size {x.Size(d)} of {Tensor.ShapeString(x.Shape)}");
        var strides = Strides(x.Shape);
        var parts = new Tensor[sizes.Length];
        long offset = 0;
        for (var i = 0; i < sizes.Length; i++)
        {
            var shape = x.Shape.ToArray();
            shape[d] = sizes[i];
            parts[i] = Gather(x, offset, shape, strides);
            offset += sizes[i] * strides[d];
        }
        return parts;
    }

    /// <summary>
    /// <c>x[index]</c> where <paramref name="index"/> is an int64 tensor: PyTorch's advanced indexing on the first
    /// dimension (<c>table[idx]</c>, an embedding-style lookup), whose result has shape <c>idx.shape + x.shape[1:]</c>.
    /// </summary>
    public static Tensor Take(Tensor x, Tensor index)
    {
        if (x.DType != DType.Float32) throw new EngineInputException($"indexing: the engine indexes float32 tensors with a tensor, got {x.DType}");
        if (x.Rank == 0) throw new EngineInputException("indexing: a 0-dimensional tensor cannot be indexed with a tensor");
        var rows = x.Size(0);
        var row = rows == 0 ? 0 : x.Count / rows; // an empty table: every index is out of range, refused below
        var idx = index.Int64;
        var shape = index.Shape.ToArray().Concat(x.Shape[1..].ToArray()).ToArray();
        var output = Pass.Fresh(Tensor.Product(shape));
        var src = x.RawFloat32;
        for (var i = 0; i < idx.Length; i++)
        {
            var r = idx[i];
            if (r < -rows || r >= rows)
                throw new EngineInputException($"indexing: index {r} is out of range for dimension 0 of size {rows} ({Tensor.ShapeString(x.Shape)})");
            src.AsSpan((int)((r < 0 ? r + rows : r) * row), row).CopyTo(output.AsSpan(i * row, row));
        }
        return Tensor.Adopt(output, shape);
    }

    /// <summary>
    /// <c>x[index]</c> with basic indexing: an integer (the dimension goes), a slice, <c>...</c> (the dimensions it
    /// stands for are kept) and None (a new dimension of 1), or a list of those for several dimensions; or one int64
    /// tensor (<see cref="Take"/>).
    /// </summary>
    public static Tensor Index(Tensor x, object? index)
    {
        if (index is Tensor { DType: DType.Int64 } rowsOf) return Take(x, rowsOf);
        if (index is Tensor other) throw new EngineInputException($"indexing: the engine indexes with int64 tensors, got {other.DType}");
        var items = index is IReadOnlyList<object?> list ? list : [index];
        var ellipses = items.Count(i => i is PyConstant { Kind: PyConstantKind.Ellipsis });
        if (ellipses > 1) throw new EngineInputException("indexing: an index can only have a single ellipsis ('...')");
        var consumed = items.Count(i => i is not null && i is not PyConstant { Kind: PyConstantKind.Ellipsis });
        if (consumed > x.Rank)
            throw new EngineInputException($"indexing: too many indices ({consumed}) for a tensor of rank {x.Rank} {Tensor.ShapeString(x.Shape)}");
        var strides = Strides(x.Shape);
        var shape = new List<int>();
        var outStrides = new List<long>();
        long offset = 0;
        var dim = 0;
        foreach (var item in items)
        {
            switch (item)
            {
                case null:
                    shape.Add(1); outStrides.Add(0);
                    break;
                case PyConstant { Kind: PyConstantKind.Ellipsis }:
                    for (var k = 0; k < x.Rank - consumed; k++, dim++) { shape.Add(x.Size(dim)); outStrides.Add(strides[dim]); }
                    break;
                case long i:
                {
                    var size = x.Size(dim);
                    if (i < -size || i >= size)
                        throw new EngineInputException($"indexing: index {i} is out of range for dimension {dim} of size {size} ({Tensor.ShapeString(x.Shape)})");
                    offset += (i < 0 ? i + size : i) * strides[dim];
                    dim++;
                    break;
                }
                case PyConstant { Kind: PyConstantKind.Slice } s:
                {
                    var (start, count, step) = SliceRange(s, x.Size(dim));
                    offset += start * strides[dim];
                    shape.Add(count); outStrides.Add(strides[dim] * step);
                    dim++;
                    break;
                }
                default:
                    throw new EngineInputException($"indexing: the engine indexes tensors with integers, slices, '...' and None, got {GraphInterpreter.Describe(item)}");
            }
        }
        for (; dim < x.Rank; dim++) { shape.Add(x.Size(dim)); outStrides.Add(strides[dim]); }
        return Gather(x, offset, [.. shape], [.. outStrides]);
    }

    /// <summary>Python's <c>slice.indices(size)</c> for a positive step (<see cref="PySequence.SliceIndices"/>).</summary>
    public static (long Start, int Count, long Step) SliceRange(PyConstant s, int size)
    {
        try { return PySequence.SliceIndices(s, size); }
        catch (ArgumentException e) { throw new EngineInputException($"indexing: {e.Message}"); }
    }

    /// <summary>Row-major strides of a contiguous tensor of <paramref name="shape"/>.</summary>
    public static long[] Strides(ReadOnlySpan<int> shape)
    {
        var strides = new long[shape.Length];
        long s = 1;
        for (var i = shape.Length - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
        return strides;
    }

    /// <summary>
    /// A new contiguous tensor of <paramref name="shape"/> whose element at index <c>i</c> is
    /// <c>x[offset + Σ i_d·strides_d]</c>. The callers build offsets and strides from the input's own sizes; the
    /// extreme positions are still checked here, so a wrong view is refused rather than read out of range.
    /// </summary>
    public static Tensor Gather(Tensor x, long offset, int[] shape, long[] strides)
    {
        var src = x.RawFloat32;
        var count = Tensor.Product(shape);
        var output = Pass.Fresh(count);
        if (count == 0) return Tensor.Adopt(output, shape);
        long lo = offset, hi = offset;
        for (var d = 0; d < shape.Length; d++)
        {
            var reach = strides[d] * (shape[d] - 1);
            if (reach < 0) lo += reach; else hi += reach;
        }
        if (lo < 0 || hi >= src.Length)
            throw new EngineInputException($"a view of {Tensor.ShapeString(x.Shape)} as {Tensor.ShapeString(shape)} would read outside the tensor");
        var rank = shape.Length;
        if (rank == 0) { output[0] = src[offset]; return Tensor.Adopt(output, shape); }
        var inner = shape[rank - 1];
        var innerStride = strides[rank - 1];
        var idx = new int[rank];
        var at = offset;
        for (var o = 0; o < count; o += inner)
        {
            if (innerStride == 1) src.AsSpan((int)at, inner).CopyTo(output.AsSpan(o, inner));
            else for (int k = 0; k < inner; k++) output[o + k] = src[at + k * innerStride];
            for (var d = rank - 2; d >= 0; d--)
            {
                at += strides[d];
                if (++idx[d] < shape[d]) break;
                at -= strides[d] * shape[d];
                idx[d] = 0;
            }
        }
        return Tensor.Adopt(output, shape);
    }
}
