using System.Collections.Immutable;

namespace Fusion.Dsl.Graphs;

/// <summary>The kinds of torch.fx node.</summary>
public enum NodeOp
{
    /// <summary>The graph's input.</summary>
    Placeholder,
    /// <summary>Calls the module at dotted path <see cref="GraphNode.Target"/>, relative to the graph's container.</summary>
    CallModule,
    /// <summary>Calls a free function: one of <see cref="GraphOps"/>, or any other, carried as an opaque operation.</summary>
    CallFunction,
    /// <summary>Calls a tensor method on <c>args[0]</c>: one of <see cref="GraphOps"/>, or any other, carried as an opaque operation.</summary>
    CallMethod,
    /// <summary>Reads a parameter or buffer by path.</summary>
    GetAttr,
    /// <summary>The graph's result.</summary>
    Output,
}

/// <summary>One node of a dataflow graph, as torch.fx records it.</summary>
public sealed class GraphNode : IEquatable<GraphNode>
{
    /// <summary>Creates a node.</summary>
    /// <exception cref="ArgumentException">The name is empty, or a call has no target.</exception>
    public GraphNode(NodeOp op, string name, string? target = null, IEnumerable<GraphArg>? args = null,
        IEnumerable<KeyValuePair<string, GraphArg>>? kwargs = null)
    {
        if (string.IsNullOrEmpty(name)) throw new ArgumentException("graph node without a name");
        if (op is NodeOp.CallModule or NodeOp.CallFunction or NodeOp.CallMethod or NodeOp.GetAttr && string.IsNullOrEmpty(target))
            throw new ArgumentException($"graph node '{name}' ({op}) has no target");
        Op = op; Name = name; Target = target;
        Args = args?.ToImmutableArray() ?? ImmutableArray<GraphArg>.Empty;
        Kwargs = kwargs?.ToImmutableArray() ?? ImmutableArray<KeyValuePair<string, GraphArg>>.Empty;
        // Computed once: graph checks, the interpreter and the dataflow analysis all walk the inputs of every node.
        Inputs = [.. Args.SelectMany(a => a.References).Concat(Kwargs.SelectMany(k => k.Value.References))];
    }

    /// <summary>What the node does.</summary>
    public NodeOp Op { get; }
    /// <summary>The node's unique name, referred to by later nodes.</summary>
    public string Name { get; }
    /// <summary>Module path, function name, method name or attribute path; null for placeholder and output.</summary>
    public string? Target { get; }
    /// <summary>Positional arguments.</summary>
    public ImmutableArray<GraphArg> Args { get; }
    /// <summary>Keyword arguments.</summary>
    public ImmutableArray<KeyValuePair<string, GraphArg>> Kwargs { get; }

    /// <summary>Names of the nodes whose values this node reads: the references in <see cref="Args"/>, then those in
    /// <see cref="Kwargs"/>, in order and with repeats.</summary>
    public ImmutableArray<string> Inputs { get; }

    /// <summary>The keyword argument <paramref name="key"/>, or null.</summary>
    public GraphArg? Kwarg(string key)
    {
        foreach (var kv in Kwargs) if (kv.Key == key) return kv.Value;
        return null;
    }

    /// <inheritdoc />
    public bool Equals(GraphNode? other)
        => other is not null && other.Op == Op && other.Name == Name && other.Target == Target && other.Args.SequenceEqual(Args)
           && other.Kwargs.Length == Kwargs.Length
           && other.Kwargs.Zip(Kwargs).All(p => p.First.Key == p.Second.Key && p.First.Value.Equals(p.Second.Value));
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as GraphNode);
    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Op, Name, Target);
    /// <inheritdoc />
    public override string ToString() => $"%{Name} = {Op}[{Target}]({string.Join(", ", Args)})";
}
