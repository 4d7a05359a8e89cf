using System.Globalization;

namespace Fusion.Dsl.Graphs;

/// <summary>A value inside a graph under construction: the name of the node that produces it.</summary>
/// <param name="Node">The producing node's name.</param>
public readonly record struct GraphValue(string Node)
{
    /// <summary>This value as a node argument.</summary>
    public GraphArg Arg => GraphArg.Ref(Node);
}

/// <summary>
/// Builds a <see cref="Graph"/> by calling modules and functions on values, naming nodes the way torch.fx does
/// (<c>layer1.0.conv1</c> → <c>layer1_0_conv1</c>, repeats get <c>_1</c>, <c>_2</c>, ...). Used by the model zoo and by
/// users who write a residual block by hand.
/// </summary>
public sealed class GraphBuilder
{
    private readonly List<GraphNode> _nodes = [];
    private readonly Dictionary<string, int> _used = new(StringComparer.Ordinal);

    /// <summary>Adds the input placeholder (named <c>x</c> by default, as fx names a <c>forward(self, x)</c> argument).</summary>
    public GraphValue Input(string name = "x") => Add(new GraphNode(NodeOp.Placeholder, Fresh(name), name));

    /// <summary>Calls the module at <paramref name="path"/> (relative to the container) on <paramref name="input"/>.</summary>
    public GraphValue Call(string path, GraphValue input)
        => Add(new GraphNode(NodeOp.CallModule, Fresh(path.Replace('.', '_')), path, [input.Arg]));

    /// <summary>Calls a free function such as <c>add</c> or <c>flatten</c> with node and constant arguments.</summary>
    public GraphValue Function(string name, params object?[] args)
        => Add(new GraphNode(NodeOp.CallFunction, Fresh(name), name, args.Select(ToArg)));

    /// <summary>Calls a tensor method such as <c>reshape</c> on <paramref name="self"/>.</summary>
    public GraphValue Method(string name, GraphValue self, params object?[] args)
        => Add(new GraphNode(NodeOp.CallMethod, Fresh(name), name, [self.Arg, .. args.Select(ToArg)]));

    /// <summary>Reads the parameter or buffer at dotted path <paramref name="target"/> (relative to the container), as
    /// torch.fx's <c>get_attr</c> does for <c>self.scale</c>.</summary>
    public GraphValue GetAttr(string target) => Add(new GraphNode(NodeOp.GetAttr, Fresh(target.Replace('.', '_')), target));

    /// <summary><c>a + b</c> (the <c>add</c> function).</summary>
    public GraphValue AddValues(GraphValue a, GraphValue b) => Function("add", a, b);

    /// <summary>Finishes the graph with <paramref name="result"/> as its output.</summary>
    public Graph Output(GraphValue result)
    {
        _nodes.Add(new GraphNode(NodeOp.Output, "output", "output", [result.Arg]));
        return new Graph(_nodes);
    }

    private GraphValue Add(GraphNode n)
    {
        _nodes.Add(n);
        return new GraphValue(n.Name);
    }

    private string Fresh(string baseName)
    {
        if (!_used.TryGetValue(baseName, out var k)) { _used[baseName] = 1; return baseName; }
        _used[baseName] = k + 1;
        return baseName + "_" + k.ToString(CultureInfo.InvariantCulture);
    }

    private static GraphArg ToArg(object? a) => a switch
    {
        GraphValue v => v.Arg,
        GraphArg g => g,
        int[] xs => GraphArg.List(xs.Select(x => GraphArg.Const(x)).ToArray()),
        object?[] xs => GraphArg.List(xs.Select(ToArg).ToArray()),
        _ => GraphArg.Const(a),
    };
}
