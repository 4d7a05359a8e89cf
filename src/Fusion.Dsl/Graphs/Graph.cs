using System.Collections.Immutable;

namespace Fusion.Dsl.Graphs;

/// <summary>
/// A container's forward as a torch.fx-style dataflow graph: nodes in execution order, one placeholder per input,
/// exactly one output. Module calls name dotted paths relative to the container, so a fusion that swaps a module
/// keeps the graph as it is: the call reaches the fused module or an <c>Identity</c>.
/// </summary>
public sealed class Graph : IEquatable<Graph>
{
    /// <summary>Builds and checks a graph.</summary>
    /// <remarks>A function or method outside <see cref="GraphOps"/> is allowed: it is carried as an opaque operation.</remarks>
    /// <exception cref="ArgumentException">A name repeats, a reference points forward or nowhere, or there is not exactly one output.</exception>
    public Graph(IEnumerable<GraphNode> nodes)
    {
        Nodes = nodes.ToImmutableArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var outputs = 0;
        foreach (var n in Nodes)
        {
            foreach (var r in n.Inputs)
                if (!seen.Contains(r)) throw new ArgumentException($"graph node '{n.Name}' reads '{r}', which is not an earlier node");
            if (!seen.Add(n.Name)) throw new ArgumentException($"graph node name '{n.Name}' appears twice");
            if (n.Op == NodeOp.Output) outputs++;
        }
        if (outputs != 1) throw new ArgumentException($"a graph needs exactly one output node, found {outputs}");
    }

    /// <summary>The nodes in execution order.</summary>
    public ImmutableArray<GraphNode> Nodes { get; }

    /// <summary>The module paths called, in order (with repeats).</summary>
    public IEnumerable<string> ModuleCalls => Nodes.Where(n => n.Op == NodeOp.CallModule).Select(n => n.Target!);

    /// <summary>The nodes that read the value of <paramref name="nodeName"/>.</summary>
    /// <remarks>In execution order, each reader once; the index is built on first use (the graph is immutable).</remarks>
    public ImmutableArray<GraphNode> Consumers(string nodeName)
    {
        ArgumentNullException.ThrowIfNull(nodeName);
        var index = _consumers ??= BuildConsumerIndex();
        return index.TryGetValue(nodeName, out var readers) ? readers : [];
    }

    private Dictionary<string, ImmutableArray<GraphNode>>? _consumers;

    // A benign race: two threads may both build the index, and either result is the same.
    private Dictionary<string, ImmutableArray<GraphNode>> BuildConsumerIndex()
    {
        var lists = new Dictionary<string, List<GraphNode>>(StringComparer.Ordinal);
        foreach (var n in Nodes)
            foreach (var r in n.Inputs)
            {
                if (!lists.TryGetValue(r, out var list)) lists[r] = list = [];
                if (list.Count == 0 || !ReferenceEquals(list[^1], n)) list.Add(n);
            }
        return lists.ToDictionary(kv => kv.Key, kv => kv.Value.ToImmutableArray(), StringComparer.Ordinal);
    }

    /// <inheritdoc />
    public bool Equals(Graph? other) => other is not null && (ReferenceEquals(this, other) || other.Nodes.SequenceEqual(Nodes));
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Graph);
    /// <inheritdoc />
    public override int GetHashCode() => Nodes.Length;
}
