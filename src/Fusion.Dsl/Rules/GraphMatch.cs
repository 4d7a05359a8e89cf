using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// A place where a <see cref="GraphPattern"/> matched, as a <see cref="GraphGuard"/> and a <see cref="GraphRule.Applier"/> see it:
/// the container whose forward graph holds it, the node whose value the rule replaces (<see cref="Root"/>), and what each
/// named part of the pattern bound.
/// </summary>
public sealed class GraphMatch
{
    private readonly ImmutableDictionary<string, GraphNode> _nodes;
    private readonly ImmutableDictionary<string, GraphArg> _values;

    internal GraphMatch(string container, UserModule owner, GraphNode root, ImmutableDictionary<string, GraphNode> nodes,
        ImmutableDictionary<string, GraphArg> values, ImmutableArray<GraphNode> matched, int firstIndex, int rootIndex)
    {
        Container = container; Owner = owner; Root = root; _nodes = nodes; _values = values; Nodes = matched;
        FirstIndex = firstIndex; RootIndex = rootIndex;
    }

    /// <summary>The position in <see cref="Graph"/> of the first matched node.</summary>
    internal int FirstIndex { get; }

    /// <summary>The position in <see cref="Graph"/> of <see cref="Root"/>.</summary>
    internal int RootIndex { get; }

    /// <summary>Dotted path, from the model root, of the container whose graph holds the match (<c>""</c> for the root).</summary>
    public string Container { get; }

    /// <summary>That container.</summary>
    public UserModule Owner { get; }

    /// <summary>The graph holding the match.</summary>
    public Graph Graph => Owner.Forward!;

    /// <summary>The node whose value the rule's result replaces (the outermost part of the pattern).</summary>
    public GraphNode Root { get; }

    /// <summary>Every node the match spans, in graph order: the module calls and operations of the pattern and the
    /// <see cref="Identity"/> calls looked through.</summary>
    public ImmutableArray<GraphNode> Nodes { get; }

    /// <summary>The names bound to nodes (module and operation parts).</summary>
    public IEnumerable<string> NodeNames => _nodes.Keys;

    /// <summary>The node bound to <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No module or operation part is named so.</exception>
    public GraphNode Node(string name) => _nodes.TryGetValue(name, out var n) ? n : throw Unbound(name, "a module or operation");

    /// <summary>The argument bound to an input or constant part named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No input or constant part is named so.</exception>
    public GraphArg Value(string name) => _values.TryGetValue(name, out var v) ? v : throw Unbound(name, "an input or constant");

    /// <summary>The module a module part named <paramref name="name"/> called.</summary>
    /// <exception cref="KeyNotFoundException">No module part is named so.</exception>
    public Module Module(string name)
    {
        var node = Node(name);
        return node.Op == NodeOp.CallModule ? ModulePath.Get(Owner, node.Target!) : throw Unbound(name, "a module");
    }

    /// <summary>Dotted path, from the model root, of the module a module part named <paramref name="name"/> called.</summary>
    public string ModulePathOf(string name) => ModulePath.Join(Container, Node(name).Target!);

    /// <summary>
    /// The value of a constant part: a <c>long</c> or <c>double</c> written in the graph, or the tensor a <c>get_attr</c> node
    /// reads (resolved as the engine resolves it); null when the attribute holds no tensor.
    /// </summary>
    public object? Constant(string name) => Value(name) switch
    {
        ConstArg c => c.Value,
        RefArg r when Graph.Nodes.FirstOrDefault(n => n.Name == r.Node) is { Op: NodeOp.GetAttr } attr => Owner.Attribute(attr.Target!),
        _ => null,
    };

    /// <summary>Names a module part for messages: <c>'layer1.0.conv2' (Conv2d)</c>.</summary>
    public string Describe(string name) => $"'{ModulePathOf(name)}' ({Module(name).TypeName})";

    private static KeyNotFoundException Unbound(string name, string what)
        => new($"the graph pattern binds no {what} part named '{name}'; the rule is defined wrongly");
}
