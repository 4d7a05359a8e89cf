using System.Collections.Immutable;

namespace Fusion.Dsl.Graphs;

/// <summary>One parameter of a <see cref="GraphOp"/>: its PyTorch name and, when it may be left out, PyTorch's default.</summary>
/// <param name="Name">The keyword PyTorch accepts (<c>input</c>, <c>dim</c>, <c>inplace</c>, ...).</param>
/// <param name="Optional">Whether a call may leave it out.</param>
/// <param name="Default">The value used when it is left out (a long, double, bool or null).</param>
public sealed record OpParameter(string Name, bool Optional = false, object? Default = null);

/// <summary>
/// A torch function or tensor method that a graph node may call and that this project understands: its name as the
/// model format writes it, its parameters in PyTorch's positional order, and whether (and through which flag) it
/// overwrites its first argument. The engine, the ONNX exporter and the Python exporter's checks all read calls through
/// this one description (<see cref="GraphOps"/>), so an argument means the same thing everywhere.
/// </summary>
public sealed class GraphOp
{
    internal GraphOp(NodeOp kind, string name, OpParameter[] parameters, bool varargs = false, string? inplaceFlag = null)
    {
        Kind = kind; Name = name; Parameters = [.. parameters]; Varargs = varargs; InplaceFlag = inplaceFlag;
    }

    /// <summary><see cref="NodeOp.CallFunction"/> or <see cref="NodeOp.CallMethod"/> (whose first parameter is <c>self</c>).</summary>
    public NodeOp Kind { get; }

    /// <summary>The target as the model format writes it (<c>add</c>, <c>flatten</c>, ...).</summary>
    public string Name { get; }

    /// <summary>The parameters in PyTorch's positional order.</summary>
    public ImmutableArray<OpParameter> Parameters { get; }

    /// <summary>Whether the last parameter also takes the remaining positional arguments as one list, as
    /// <c>x.view(2, -1)</c> means <c>x.view((2, -1))</c>.</summary>
    public bool Varargs { get; }

    /// <summary>The boolean parameter that makes the call overwrite its first argument (<c>inplace</c>), or null.</summary>
    public string? InplaceFlag { get; }

    /// <summary>
    /// Matches <paramref name="node"/>'s arguments to the parameters (positional first, then keywords by name, then the
    /// defaults) and resolves each with <paramref name="resolve"/>; <paramref name="describe"/> names a resolved value in
    /// messages (default: <see cref="OpCall.DescribeValue"/>).
    /// </summary>
    /// <exception cref="GraphCallException">Too many or too few arguments, or a keyword this operation does not take.</exception>
    public OpCall Bind(GraphNode node, Func<GraphArg, object?> resolve, Func<object?, string>? describe = null)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(resolve);
        var names = Parameters.Select(p => p.Name).ToArray();
        var values = new object?[Parameters.Length];
        var given = new bool[Parameters.Length];
        var positional = node.Args;
        if (Varargs && positional.Length > Parameters.Length)
        {
            var last = Parameters.Length - 1;
            for (var i = 0; i < last; i++) (values[i], given[i]) = (resolve(positional[i]), true);
            values[last] = positional.Skip(last).Select(resolve).ToArray();
            given[last] = true;
        }
        else
        {
            if (positional.Length > Parameters.Length)
                throw new GraphCallException(node, $"{Name} takes at most {Parameters.Length} arguments ({string.Join(", ", names)}), got {positional.Length} positional");
            for (var i = 0; i < positional.Length; i++) (values[i], given[i]) = (resolve(positional[i]), true);
        }
        foreach (var (key, arg) in node.Kwargs)
        {
            var i = Array.IndexOf(names, key);
            if (i < 0) throw new GraphCallException(node, $"{Name} has no argument '{key}' (it takes {string.Join(", ", names)})");
            if (given[i]) throw new GraphCallException(node, $"{Name} got argument '{key}' twice (by position and by keyword)");
            (values[i], given[i]) = (resolve(arg), true);
        }
        for (var i = 0; i < Parameters.Length; i++)
        {
            if (given[i]) continue;
            if (!Parameters[i].Optional) throw new GraphCallException(node, $"{Name} needs argument '{names[i]}' (it takes {string.Join(", ", names)})");
            values[i] = Parameters[i].Default;
        }
        return new OpCall(this, node, values, given, describe ?? OpCall.DescribeValue);
    }

    /// <summary>Whether <paramref name="node"/> overwrites its first argument: its <see cref="InplaceFlag"/> is the constant <c>True</c>.</summary>
    public bool IsInplace(GraphNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (InplaceFlag is null) return false;
        var i = Parameters.Select(p => p.Name).ToList().IndexOf(InplaceFlag);
        var arg = i < node.Args.Length ? node.Args[i] : node.Kwarg(InplaceFlag);
        return arg is ConstArg { Value: true };
    }

    /// <inheritdoc />
    public override string ToString() => $"{(Kind == NodeOp.CallMethod ? "Tensor." : "")}{Name}({string.Join(", ", Parameters.Select(p => p.Name))})";
}
