using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace Fusion.Dsl.Tensors;

/// <summary>Element type of a <see cref="Tensor"/>: PyTorch's <c>float32</c> for weights and activations,
/// <c>int64</c> for counters such as <c>num_batches_tracked</c>.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float (safetensors <c>F32</c>).</summary>
    Float32,
    /// <summary>64-bit signed integer (safetensors <c>I64</c>).</summary>
    Int64,
}

/// <summary>
/// A dense, row-major, immutable tensor. Callers never receive a writable view of the storage:
/// factories copy their input, accessors hand out read-only spans. Equality is structural and
/// bit-exact (same dtype, same shape, same bits), so <c>NaN</c> equals itself and <c>-0</c> differs from <c>0</c>.
/// A weight made by BatchNorm folding starts as a recipe (the original weight and one float64 scale per output channel)
/// and computes its elements once, on first read, from any thread; the engine packs such a weight straight from the
/// recipe, so fusion never writes a second copy of the model's weights. Values, shape and equality do not depend on
/// whether the elements have been computed yet.
/// </summary>
public sealed class Tensor : IEquatable<Tensor>
{
    private float[]? _f32;
    private readonly long[]? _i64;
    private readonly int[] _shape;
    private readonly int _count;
    // Set while the elements of a deferred tensor (a folded weight) are not computed yet; cleared (and with it whatever
    // the recipe holds, such as the source weight) once they are.
    private DeferredElements? _pending;

    private Tensor(DType dtype, int[] shape, float[]? f32, long[]? i64)
    {
        DType = dtype;
        _shape = shape;
        _f32 = f32;
        _i64 = i64;
        _count = f32?.Length ?? i64!.Length;
    }

    private Tensor(int[] shape, DeferredElements pending)
    {
        DType = DType.Float32;
        _shape = shape;
        _pending = pending;
        _count = pending.Count;
    }

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>The dimensions, outermost first; empty for a scalar.</summary>
    public ReadOnlySpan<int> Shape => _shape;

    /// <summary>The dimensions as an immutable array (a copy; prefer <see cref="Shape"/> in hot code).</summary>
    public ImmutableArray<int> Dimensions => ImmutableArray.Create(_shape);

    /// <summary>Number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements (the product of the dimensions; 1 for a scalar).</summary>
    public int Count => _count;

    /// <summary>Bytes of one element of <paramref name="dtype"/>: 4 for float32, 8 for int64.</summary>
    public static int ElementSize(DType dtype) => dtype == DType.Float32 ? sizeof(float) : sizeof(long);

    /// <summary>Bytes of the elements (<see cref="Count"/> times <see cref="ElementSize"/> of the dtype), as safetensors stores them.</summary>
    public long ByteCount => (long)Count * ElementSize(DType);

    /// <summary>The float32 elements in row-major order. Throws when the tensor is <c>int64</c>.</summary>
    public ReadOnlySpan<float> Float32 => RawFloat32;

    /// <summary>The int64 elements in row-major order. Throws when the tensor is <c>float32</c>.</summary>
    public ReadOnlySpan<long> Int64 => _i64 ?? throw new InvalidOperationException($"tensor of dtype {DType} read as Int64");

    /// <summary>Size of dimension <paramref name="dim"/>; negative values count from the end, as in PyTorch.</summary>
    public int Size(int dim) => _shape[dim < 0 ? dim + _shape.Length : dim];

    /// <summary>Creates a float32 tensor from a copy of <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentException">The element count does not match the shape, or a dimension is negative.</exception>
    public static Tensor FromFloat32(ReadOnlySpan<float> data, params int[] shape)
        => new(DType.Float32, CheckShape(shape, data.Length), data.ToArray(), null);

    /// <summary>Creates an int64 tensor from a copy of <paramref name="data"/>.</summary>
    /// <exception cref="ArgumentException">The element count does not match the shape, or a dimension is negative.</exception>
    public static Tensor FromInt64(ReadOnlySpan<long> data, params int[] shape)
        => new(DType.Int64, CheckShape(shape, data.Length), null, data.ToArray());

    /// <summary>A float32 tensor of the given shape filled with <paramref name="value"/>.</summary>
    public static Tensor Full(float value, params int[] shape)
    {
        var data = new float[Product(shape)];
        if (value != 0f) Array.Fill(data, value);
        return new(DType.Float32, (int[])shape.Clone(), data, null);
    }

    /// <summary>A float32 tensor of zeros.</summary>
    public static Tensor Zeros(params int[] shape) => Full(0f, shape);

    /// <summary>An int64 scalar, the shape PyTorch gives <c>num_batches_tracked</c>.</summary>
    public static Tensor ScalarInt64(long value) => new(DType.Int64, Array.Empty<int>(), null, new[] { value });

    /// <summary>
    /// A float32 tensor whose elements <paramref name="fill"/> writes into the tensor's own storage, with no copy: the way to
    /// build a large tensor (random initialisation, a decoder) at the cost of one allocation.
    /// </summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count overflows.</exception>
    public static Tensor Create(TensorFiller fill, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(fill);
        var data = new float[Product(shape)];
        fill(data);
        return new(DType.Float32, (int[])shape.Clone(), data, null);
    }

    /// <summary>A float32 tensor filled by <paramref name="fill"/> (called once per element, in row-major order).</summary>
    public static Tensor Generate(Func<int, float> fill, params int[] shape)
    {
        var data = new float[Product(shape)];
        for (var i = 0; i < data.Length; i++) data[i] = fill(i);
        return new(DType.Float32, (int[])shape.Clone(), data, null);
    }

    /// <summary>
    /// Takes ownership of <paramref name="data"/> without copying. Only for code that has just allocated
    /// the array and never touches it again (the engine, the folding kernels, the readers).
    /// </summary>
    internal static Tensor Adopt(float[] data, int[] shape) => new(DType.Float32, CheckShape(shape, data.Length), data, null);

    /// <summary>Int64 counterpart of <see cref="Adopt(float[], int[])"/>.</summary>
    internal static Tensor Adopt(long[] data, int[] shape) => new(DType.Int64, CheckShape(shape, data.Length), null, data);

    /// <summary>The storage, for internal kernels that only read it (computed first if the tensor is a pending fold).</summary>
    internal float[] RawFloat32 => F32 ?? throw new InvalidOperationException($"tensor of dtype {DType} read as Float32");

    /// <summary>
    /// A float32 tensor of <paramref name="shape"/> whose elements <paramref name="elements"/> computes when first read
    /// (at most once). Whatever the recipe holds is released once they are computed.
    /// </summary>
    /// <exception cref="ArgumentException">The shape's element count differs from the recipe's.</exception>
    internal static Tensor Deferred(int[] shape, DeferredElements elements)
        => new(CheckShape(shape, elements.Count), elements);

    /// <summary>The recipe of a tensor whose elements are not computed yet, or null (computed, or never deferred).
    /// The engine packs a folded weight from its recipe instead of computing the elements.</summary>
    internal DeferredElements? Pending => Volatile.Read(ref _pending);

    /// <summary>Whether the elements exist in memory (false only for a fold not read yet).</summary>
    internal bool IsMaterialized => Pending is null;

    private float[]? F32 => Volatile.Read(ref _f32) ?? (_i64 is null ? Materialize() : null);

    private float[] Materialize()
    {
        var pending = Volatile.Read(ref _pending);
        if (pending is null) return Volatile.Read(ref _f32)!;
        lock (pending)
        {
            if (Volatile.Read(ref _f32) is null)
            {
                var data = pending.Compute();
                if (data.Length != _count) throw new InvalidOperationException($"a deferred tensor computed {data.Length} elements for shape {ShapeString(_shape)}");
                Volatile.Write(ref _f32, data);
                // The source weight is no longer needed by this tensor.
                Volatile.Write(ref _pending, null);
            }
        }
        return _f32!;
    }

    /// <summary>The same elements viewed with another shape of the same element count (no copy: storage is immutable).</summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public Tensor Reshape(params int[] shape)
    {
        var resolved = ResolveShape(shape, Count);
        if (resolved.AsSpan().SequenceEqual(_shape)) return this;
        return new(DType, resolved, F32, _i64);
    }

    /// <summary>Copies the elements into a new array (float32 only).</summary>
    public float[] ToArray() => Float32.ToArray();

    /// <summary>Element at a row-major flat index as a double (either dtype).</summary>
    public double this[int flatIndex] => _i64 is null ? RawFloat32[flatIndex] : _i64[flatIndex];

    /// <summary>True when both tensors have the same dtype, shape and the same bits in every element.</summary>
    public bool Equals(Tensor? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || other.DType != DType || !other.Shape.SequenceEqual(Shape)) return false;
        return _i64 is null
            ? MemoryMarshal.AsBytes(RawFloat32.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(other.RawFloat32.AsSpan()))
            : _i64.AsSpan().SequenceEqual(other._i64);
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Tensor);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(DType);
        foreach (var d in _shape) h.Add(d);
        // A few elements suffice for a hash; equality compares all of them.
        var n = Math.Min(Count, 8);
        for (var i = 0; i < n; i++) h.Add(this[i]);
        return h.ToHashCode();
    }

    /// <summary>Largest absolute element-wise difference to <paramref name="other"/> (same shape required).</summary>
    /// <exception cref="ArgumentException">The shapes differ.</exception>
    public double MaxAbsDiff(Tensor other)
    {
        if (!other.Shape.SequenceEqual(Shape))
            throw new ArgumentException($"shape {ShapeString(Shape)} compared with {ShapeString(other.Shape)}");
        double m = 0;
        for (var i = 0; i < Count; i++)
        {
            var d = Math.Abs(this[i] - other[i]);
            if (double.IsNaN(d)) return double.NaN;
            if (d > m) m = d;
        }
        return m;
    }

    /// <summary>Largest absolute element.</summary>
    public double MaxAbs()
    {
        double m = 0;
        for (var i = 0; i < Count; i++) m = Math.Max(m, Math.Abs(this[i]));
        return m;
    }

    /// <summary>
    /// PyTorch-style closeness used by the fixtures: <c>max|a-b| &lt;= atol + rtol * max|b|</c>
    /// where <c>b</c> is <paramref name="expected"/>.
    /// </summary>
    public bool IsCloseTo(Tensor expected, double rtol, double atol)
    {
        if (!expected.Shape.SequenceEqual(Shape)) return false;
        var d = MaxAbsDiff(expected);
        return !double.IsNaN(d) && d <= atol + rtol * expected.MaxAbs();
    }

    /// <summary>Formats a shape as PyTorch prints it, e.g. <c>[2, 3, 8, 8]</c>.</summary>
    public static string ShapeString(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <inheritdoc />
    public override string ToString() => $"Tensor({DType}, {ShapeString(Shape)})";

    /// <summary>The number of elements of a tensor of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">A dimension is negative, or the count is over <see cref="Limits.MaxElements"/>.</exception>
    public static int Product(ReadOnlySpan<int> shape)
    {
        foreach (var d in shape)
            if (d < 0) throw new ArgumentException($"negative dimension in shape {ShapeString(shape)}");
        return Limits.ElementCount(shape) ?? throw new ArgumentException($"shape {ShapeString(shape)} has more than the limit of {Limits.MaxElements} elements per tensor");
    }

    private static int[] CheckShape(int[] shape, int count)
    {
        var n = Product(shape);
        if (n != count) throw new ArgumentException($"shape {ShapeString(shape)} holds {n} elements but {count} were given");
        return (int[])shape.Clone();
    }

    /// <summary>The shape <c>torch.reshape</c> gives <paramref name="count"/> elements for <paramref name="shape"/>: its one
    /// <c>-1</c> entry, if any, inferred.</summary>
    /// <exception cref="ArgumentException">More than one <c>-1</c>, another negative entry, or sizes that do not hold
    /// <paramref name="count"/> elements.</exception>
    public static int[] ResolveShape(ReadOnlySpan<int> shape, int count)
    {
        var result = shape.ToArray();
        var infer = -1;
        long known = 1;
        for (var i = 0; i < result.Length; i++)
        {
            if (result[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException($"only one dimension can be inferred in {ShapeString(shape)}");
                infer = i;
            }
            else if (result[i] < 0) throw new ArgumentException($"invalid dimension {result[i]} in {ShapeString(shape)}");
            else known *= result[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || count % known != 0)
                throw new ArgumentException($"shape {ShapeString(shape)} is invalid for input of size {count}");
            result[infer] = (int)(count / known);
        }
        else if (known != count)
            throw new ArgumentException($"shape {ShapeString(shape)} is invalid for input of size {count}");
        return result;
    }
}
