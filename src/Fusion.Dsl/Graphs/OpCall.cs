using System.Globalization;

namespace Fusion.Dsl.Graphs;

/// <summary>
/// A graph node's arguments matched to its <see cref="GraphOp"/>'s parameters and resolved by the caller (tensors are
/// whatever the caller evaluates to: the engine's tensors, the ONNX exporter's named values). The typed accessors apply
/// PyTorch's conventions once for every consumer: an int where a pair is expected means the pair, a list of sizes may be
/// a single int, None is a value of its own.
/// </summary>
public sealed class OpCall
{
    private readonly object?[] _values;
    private readonly bool[] _given;

    private readonly Func<object?, string> _describe;

    internal OpCall(GraphOp op, GraphNode node, object?[] values, bool[] given, Func<object?, string> describe)
    {
        Op = op; Node = node; _values = values; _given = given; _describe = describe;
    }

    /// <summary>The operation.</summary>
    public GraphOp Op { get; }

    /// <summary>The node.</summary>
    public GraphNode Node { get; }

    private int Index(string name)
    {
        for (var i = 0; i < Op.Parameters.Length; i++)
            if (Op.Parameters[i].Name == name) return i;
        throw new ArgumentException($"{Op.Name} has no parameter '{name}'", nameof(name));
    }

    /// <summary>Whether the call gave <paramref name="name"/> (by position or keyword) rather than leaving the default.</summary>
    public bool Has(string name) => _given[Index(name)];

    /// <summary>The value of <paramref name="name"/> (the default when left out).</summary>
    public object? Value(string name) => _values[Index(name)];

    /// <summary>The value of <paramref name="name"/> as a <typeparamref name="T"/> (a tensor of the consumer's kind).</summary>
    /// <exception cref="GraphCallException">It is something else.</exception>
    public T Get<T>(string name, string expected) where T : class
        => Value(name) as T ?? throw Error(name, expected);

    /// <summary>An integer argument.</summary>
    /// <exception cref="GraphCallException">It is not an integer.</exception>
    public long Long(string name) => Value(name) is long l ? l : throw Error(name, "an integer");

    /// <summary>An integer argument or None.</summary>
    /// <exception cref="GraphCallException">It is neither.</exception>
    public long? OptionalLong(string name) => Value(name) switch
    {
        null => null,
        long l => l,
        _ => throw Error(name, "an integer or None"),
    };

    /// <summary>A number argument (an integer counts, as in Python).</summary>
    /// <exception cref="GraphCallException">It is not a number.</exception>
    public double Double(string name) => Value(name) switch
    {
        long l => l,
        double d => d,
        _ => throw Error(name, "a number"),
    };

    /// <summary>A True/False argument.</summary>
    /// <exception cref="GraphCallException">It is not a boolean.</exception>
    public bool Flag(string name) => Value(name) is bool b ? b : throw Error(name, "True or False");

    /// <summary>A list of integers; a single integer is a list of one (<c>x.view(-1)</c>).</summary>
    /// <exception cref="GraphCallException">It is not, or an entry does not fit in 32 bits.</exception>
    public int[] IntList(string name)
    {
        var v = Value(name);
        if (v is long single) return [Int(name, single)];
        if (v is not IReadOnlyList<object?> list) throw Error(name, "a list of integers");
        return [.. list.Select(x => x is long l ? Int(name, l) : throw Error(name, "a list of integers"))];
    }

    /// <summary>A torch dtype argument as PyTorch names it (<c>torch.int64</c>), or null for None.</summary>
    /// <exception cref="GraphCallException">It is something else.</exception>
    public string? DTypeName(string name) => Value(name) switch
    {
        null => null,
        PyConstant { Kind: PyConstantKind.DType } d => d.Text,
        _ => throw Error(name, "a torch dtype or None"),
    };

    /// <summary>A list of integers, or <paramref name="fallback"/> when it is None or empty (a functional pool's stride,
    /// whose default is the kernel size).</summary>
    /// <exception cref="GraphCallException">It is something else.</exception>
    public int[] IntListOr(string name, int[] fallback)
        => Value(name) is null or IReadOnlyList<object?> { Count: 0 } ? fallback : IntList(name);

    /// <summary>An <c>output_size</c>-style pair: one integer (square), or two entries that may be None.</summary>
    /// <exception cref="GraphCallException">It is neither.</exception>
    public (int? H, int? W) SizePair(string name)
    {
        int? Entry(object? v) => v switch
        {
            null => null,
            long l => Int(name, l),
            _ => throw Error(name, "an integer or a pair of integers (or None)"),
        };
        return Value(name) switch
        {
            long l => (Int(name, l), Int(name, l)),
            IReadOnlyList<object?> { Count: 2 } p => (Entry(p[0]), Entry(p[1])),
            _ => throw Error(name, "an integer or a pair of integers (or None)"),
        };
    }

    private int Int(string name, long v) => v is >= int.MinValue and <= int.MaxValue ? (int)v : throw Error(name, "an integer that fits in 32 bits");

    /// <summary>The refusal of argument <paramref name="name"/>, which had to be <paramref name="expected"/>.</summary>
    public GraphCallException Error(string name, string expected)
        => new(Node, $"argument '{name}' of {Op.Name} must be {expected}, got {(Has(name) ? _describe(Value(name)) : "nothing")}");

    /// <summary>Describes a value the way messages name it: <c>None</c>, <c>a list of 2</c>, <c>Int64 3</c>.</summary>
    public static string DescribeValue(object? v) => v switch
    {
        null => "None",
        IReadOnlyList<object?> l => $"a list of {l.Count}",
        IFormattable f => $"{v.GetType().Name} {f.ToString(null, CultureInfo.InvariantCulture)}",
        _ => $"{v.GetType().Name} {v}",
    };
}
