using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Graphs;

/// <summary>
/// The value of the graph operation <c>tensor(data, dtype=...)</c>: how the exporter writes a tensor computed at trace
/// time (torch.fx's <c>_tensor_constantN</c>, which no state_dict holds) as nested lists of numbers. Read once here for
/// every consumer (the engine, the ONNX exporter).
/// </summary>
public static class TensorLiteral
{
    /// <summary>The tensor <paramref name="data"/> (nested lists of <c>long</c> and <c>double</c>, as a graph argument
    /// resolves) describes; the nesting gives the shape. <paramref name="dtype"/> is PyTorch's name
    /// (<c>torch.float32</c>, the default, or <c>torch.int64</c>).</summary>
    /// <exception cref="NotSupportedException">Another dtype: a valid model this project does not compute.</exception>
    /// <exception cref="ArgumentException">The data is empty, ragged, or holds a value the dtype cannot.</exception>
    public static Tensor Read(object? data, string? dtype)
    {
        var ints = dtype switch
        {
            "torch.int64" => true,
            "torch.float32" or null => false,
            _ => throw new NotSupportedException($"a tensor constant of dtype {dtype} (float32 and int64 are computed)"),
        };
        var shape = new List<int>();
        for (var v = data; v is IReadOnlyList<object?> l; v = l.Count > 0 ? l[0] : null)
        {
            if (shape.Count >= Limits.MaxRank) throw new ArgumentException($"a tensor constant nested deeper than {Limits.MaxRank} dimensions");
            shape.Add(l.Count);
        }
        var count = shape.Aggregate(1L, (p, n) => p * n);
        if (count == 0) throw new ArgumentException("a tensor constant without elements");
        if (count > Limits.MaxGraphConstantElements)
            throw new ArgumentException($"a tensor constant of {count} elements, more than the {Limits.MaxGraphConstantElements} a graph holds");
        var longs = ints ? new long[count] : null;
        var floats = ints ? null : new float[count];
        var at = 0;
        void Fill(object? v, int depth)
        {
            if (depth == shape.Count)
            {
                switch (v)
                {
                    case long n when ints: longs![at++] = n; break;
                    case long n: floats![at++] = n; break;
                    case double d when !ints: floats![at++] = (float)d; break;
                    default: throw new ArgumentException($"a {dtype ?? "torch.float32"} tensor constant holds {OpCall.DescribeValue(v)}");
                }
                return;
            }
            if (v is not IReadOnlyList<object?> l || l.Count != shape[depth])
                throw new ArgumentException($"the nested lists of a tensor constant are ragged (dimension {depth} should have {shape[depth]} entries, got {OpCall.DescribeValue(v)})");
            foreach (var item in l) Fill(item, depth + 1);
        }
        Fill(data, 0);
        return ints ? Tensor.FromInt64(longs!, [.. shape]) : Tensor.FromFloat32(floats!, [.. shape]);
    }
}
