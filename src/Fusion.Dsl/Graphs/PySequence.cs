namespace Fusion.Dsl.Graphs;

/// <summary>Python's indexing of the tuples and lists a traced graph computes (sizes, chunks), stated once for the
/// engine and the ONNX exporter.</summary>
public static class PySequence
{
    /// <summary><c>seq[index]</c>: an integer (negative counts from the end) or a slice with a positive step.</summary>
    /// <exception cref="ArgumentException">The index is out of range or of another kind; the message says which.</exception>
    public static object? GetItem(IReadOnlyList<object?> list, object? index)
    {
        ArgumentNullException.ThrowIfNull(list);
        switch (index)
        {
            case long i:
                if (i < -list.Count || i >= list.Count)
                    throw new ArgumentException($"index {i} is out of range for a tuple of {list.Count}");
                return list[(int)(i < 0 ? i + list.Count : i)];
            case PyConstant { Kind: PyConstantKind.Slice } s:
            {
                var (start, count, step) = SliceIndices(s, list.Count);
                return Enumerable.Range(0, count).Select(k => list[(int)(start + k * step)]).ToArray();
            }
            default:
                throw new ArgumentException($"a tuple is indexed by an integer or a slice, got {OpCall.DescribeValue(index)}");
        }
    }

    /// <summary>Python's <c>slice.indices(size)</c> for a positive step: the first index, how many, and the step.</summary>
    /// <exception cref="ArgumentException">The step is zero or negative.</exception>
    public static (long Start, int Count, long Step) SliceIndices(PyConstant slice, int size)
    {
        ArgumentNullException.ThrowIfNull(slice);
        var step = slice.Step ?? 1;
        if (step <= 0) throw new ArgumentException($"slice step must be positive, got {step}");
        static long Clip(long? v, long fallback, int size) => v is null ? fallback : Math.Clamp(v.Value < 0 ? v.Value + size : v.Value, 0, size);
        var start = Clip(slice.Start, 0, size);
        var stop = Clip(slice.Stop, size, size);
        var count = stop <= start ? 0 : (int)((stop - start + step - 1) / step);
        return (start, count, step);
    }
}
