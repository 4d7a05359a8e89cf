using System.Collections.Immutable;

namespace Fusion.Dsl.Graphs;

/// <summary>An argument of a graph node: a reference to an earlier node, a constant, or a list of arguments.</summary>
public abstract class GraphArg : IEquatable<GraphArg>
{
    private protected GraphArg() { }

    /// <summary>A reference to the value of node <paramref name="node"/>.</summary>
    public static GraphArg Ref(string node) => new RefArg(node);

    /// <summary>A constant: <c>long</c>, <c>double</c>, <c>bool</c>, <c>string</c> or null.</summary>
    /// <exception cref="ArgumentException">The value is of another type.</exception>
    public static GraphArg Const(object? value) => value switch
    {
        null or long or double or bool or string or PyConstant => new ConstArg(value),
        int i => new ConstArg((long)i),
        float f => new ConstArg((double)f),
        _ => throw new ArgumentException($"graph constants are long, double, bool, string, null or a PyConstant; got {value.GetType().Name}"),
    };

    /// <summary>A list (PyTorch tuple or list) of arguments.</summary>
    public static GraphArg List(params GraphArg[] items) => new ListArg(items.ToImmutableArray());

    /// <summary>Every node name this argument refers to, recursively.</summary>
    public abstract IEnumerable<string> References { get; }

    /// <inheritdoc />
    public abstract bool Equals(GraphArg? other);
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as GraphArg);
    /// <inheritdoc />
    public abstract override int GetHashCode();
}

/// <summary>A reference to an earlier node's value.</summary>
public sealed class RefArg : GraphArg
{
    internal RefArg(string node) => Node = node;
    /// <summary>The referenced node's name.</summary>
    public string Node { get; }
    /// <inheritdoc />
    public override IEnumerable<string> References => [Node];
    /// <inheritdoc />
    public override bool Equals(GraphArg? other) => other is RefArg r && r.Node == Node;
    /// <inheritdoc />
    public override int GetHashCode() => Node.GetHashCode(StringComparison.Ordinal);
    /// <inheritdoc />
    public override string ToString() => "%" + Node;
}

/// <summary>A constant argument.</summary>
public sealed class ConstArg : GraphArg
{
    internal ConstArg(object? value) => Value = value;
    /// <summary>The value: <c>long</c>, <c>double</c>, <c>bool</c>, <c>string</c> or null.</summary>
    public object? Value { get; }
    /// <inheritdoc />
    public override IEnumerable<string> References => [];
    /// <inheritdoc />
    public override bool Equals(GraphArg? other) => other is ConstArg c && Equals(c.Value, Value);
    /// <inheritdoc />
    public override int GetHashCode() => Value?.GetHashCode() ?? 0;
    /// <inheritdoc />
    public override string ToString() => Value?.ToString() ?? "None";
}

/// <summary>A list of arguments.</summary>
public sealed class ListArg : GraphArg
{
    internal ListArg(ImmutableArray<GraphArg> items) => Items = items;
    /// <summary>The items.</summary>
    public ImmutableArray<GraphArg> Items { get; }
    /// <inheritdoc />
    public override IEnumerable<string> References => Items.SelectMany(i => i.References);
    /// <inheritdoc />
    public override bool Equals(GraphArg? other) => other is ListArg l && l.Items.SequenceEqual(Items);
    /// <inheritdoc />
    public override int GetHashCode() => Items.Length;
    /// <inheritdoc />
    public override string ToString() => "[" + string.Join(", ", Items) + "]";
}
