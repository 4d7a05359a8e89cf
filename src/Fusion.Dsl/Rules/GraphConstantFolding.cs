using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Rules;

/// <summary>One <c>mul</c> or <c>add</c> graph node folded into the convolution before it.</summary>
/// <param name="Container">Dotted path of the user container whose forward graph held the node (<c>""</c> for the root).</param>
/// <param name="ConvPath">Dotted path, from the model root, of the convolution that absorbed the operation.</param>
/// <param name="Node">The name of the removed graph node.</param>
/// <param name="Operation"><c>mul</c> (a per-channel scale) or <c>add</c> (a per-channel shift).</param>
public sealed record ConstantFold(string Container, string ConvPath, string Node, string Operation)
{
    /// <summary>The fold as a message names it: <c>graph node 'mul' of the root folded into 'conv'</c>.</summary>
    public override string ToString()
        => $"{Operation} node '{Node}' of {(Container.Length == 0 ? "the root" : $"'{Container}'")} folded into '{ConvPath}'";
}

/// <summary>
/// A pattern PyTorch's <c>fuse_modules</c> lacks, found in the forward graphs rather than in module sequences: a convolution
/// (<c>Conv1d/2d/3d</c> or <c>ConvTranspose1d/2d/3d</c>, any groups) whose output is multiplied by, or added to, a per-channel
/// constant, <c>conv(x) * s</c> or <c>conv(x) + t</c> (either argument order, <c>call_function</c> or <c>call_method</c>). The
/// constant is a graph number or a <c>get_attr</c> of a float32 tensor in the container's state that varies along the output
/// channel only: shaped <c>[C, 1, ..., 1]</c>, <c>[1, C, 1, ..., 1]</c> (with as many trailing 1s as the convolution has spatial
/// dimensions), or with a single element. The operation is folded into the convolution's weights and bias
/// (<see cref="ConstantFolding.FoldScaleShift"/>) and its node is removed, its readers reading the convolution's node instead;
/// chains (<c>conv → mul → add</c>, or <c>add</c> before <c>mul</c>) fold in one pass.
/// </summary>
/// <remarks>
/// <para>A site is left alone when folding could change what the model computes: the convolution's output has another reader
/// (by its graph node), the convolution runs from more than one place or inside a container whose dataflow is not known
/// (<see cref="Dataflow"/>), it has a forward hook (which would see the folded output), a <c>get_attr</c> in some graph reads its weight or bias, the operation reads the convolution's
/// value twice, the constant is not per-channel (a <c>[C]</c> tensor broadcasts along the last spatial dimension, not the
/// channels), not float32 (a float64 tensor promotes the result), or not finite.</para>
/// <para>A constant of rank <c>N + 2</c> (<c>[1, C, 1, 1]</c> for a Conv2d) is folded assuming a batched input, the form a
/// traced model runs: called on an unbatched <c>[C, H, W]</c> input, the original operation would also prepend a dimension of
/// size 1, which the folded convolution does not.</para>
/// <para>This is a separate rewrite, not a member of a <see cref="RuleSet"/>: a <see cref="FusionRule"/> matches a sequence of
/// modules, while a constant is not a module. <c>fuse_modules</c> (<see cref="Fuser.FuseModules(Module, IEnumerable{string}, FuseOptions?)"/>)
/// never applies it. The rewrite keeps the get_attr'd tensor in the state (it may be read elsewhere) but drops a
/// <c>get_attr</c> node nothing reads any more.</para>
/// </remarks>
public static class GraphConstantFolding
{
    /// <summary>
    /// Folds every per-channel constant <c>mul</c>/<c>add</c> after a convolution in <paramref name="model"/>'s forward graphs.
    /// Returns a new model; <paramref name="model"/> is never changed, modules off the rewritten paths are shared with it, and a
    /// model with nothing to fold is returned itself.
    /// </summary>
    public static Module Apply(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Run(model, null);
    }

    /// <summary>The folds <see cref="Apply"/> performs on <paramref name="model"/>, in the order it performs them.</summary>
    public static IReadOnlyList<ConstantFold> Find(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var log = new List<ConstantFold>();
        Run(model, log);
        return log;
    }

    private static Module Run(Module model, List<ConstantFold>? log)
    {
        var flow = Dataflow.Of(model);
        // Containers whose graph runs: the root and every user container called as a whole.
        var containers = model.NamedModules()
            .Where(kv => kv.Value is UserModule { Forward: not null } && (kv.Key.Length == 0 || (flow.IsKnown(kv.Key) && flow.CallSites(kv.Key).Count > 0)))
            .Select(kv => kv.Key).Distinct(StringComparer.Ordinal).ToArray();
        // A get_attr of the conv's own weight or bias would read the folded values afterwards. Nodes are only ever removed,
        // so the reads of the original model cover every later state of the graphs.
        var attributeReads = containers
            .SelectMany(c => ((UserModule)(c.Length == 0 ? model : ModulePath.Get(model, c))).Forward!.Nodes
                .Where(n => n.Op == NodeOp.GetAttr).Select(n => ModulePath.Join(c, n.Target!)))
            .ToHashSet(StringComparer.Ordinal);
        var tree = model;
        foreach (var path in containers)
        {
            // Re-read from the tree: an earlier container may have folded a conv below this one.
            var container = (UserModule)(path.Length == 0 ? tree : ModulePath.Get(tree, path));
            var folded = FoldContainer(container, path, flow, attributeReads, log);
            if (ReferenceEquals(folded, container)) continue;
            tree = path.Length == 0 ? folded : ModulePath.Replace(tree, path, folded);
        }
        return tree;
    }

    private static UserModule FoldContainer(UserModule container, string path, Dataflow flow, HashSet<string> attributeReads,
        List<ConstantFold>? log)
    {
        var graph = container.Forward!;
        var current = container;
        while (NextSite(current, graph, path, flow, attributeReads) is { } site)
        {
            var conv = (Conv)ModulePath.Get(current, site.ConvNode.Target!);
            var isMul = site.Operation.Target == "mul";
            var folded = ConstantFolding.FoldScaleShift(conv, isMul ? site.Factors : [1.0], isMul ? [0.0] : site.Factors);
            current = (UserModule)ModulePath.Replace(current, site.ConvNode.Target!, folded);
            graph = Remove(graph, site.Operation, site.ConvNode.Name);
            log?.Add(new ConstantFold(path, ModulePath.Join(path, site.ConvNode.Target!), site.Operation.Name, site.Operation.Target!));
        }
        return ReferenceEquals(graph, container.Forward) ? container : current.WithForward(graph);
    }

    private sealed record Site(GraphNode ConvNode, GraphNode Operation, double[] Factors);

    /// <summary>The first conv node of <paramref name="graph"/> whose only reader is a foldable constant mul/add.</summary>
    private static Site? NextSite(UserModule container, Graph graph, string path, Dataflow flow, HashSet<string> attributeReads)
    {
        foreach (var node in graph.Nodes)
        {
            if (node.Op != NodeOp.CallModule || ModulePath.Get(container, node.Target!) is not Conv conv || conv.Hooks.Length > 0) continue;
            var full = ModulePath.Join(path, node.Target!);
            if (!flow.IsKnown(full) || flow.CallSites(full).Count != 1
                || attributeReads.Any(a => a.StartsWith(full + ".", StringComparison.Ordinal))) continue;
            var readers = graph.Consumers(node.Name).ToArray();
            if (readers.Length != 1) continue;
            var op = readers[0];
            if (op.Op is not (NodeOp.CallFunction or NodeOp.CallMethod) || op.Target is not ("mul" or "add")) continue;
            if (op.Inputs.Count(r => r == node.Name) != 1 || Operands(op) is not { } operands) continue;
            var other = operands[0] is RefArg r0 && r0.Node == node.Name ? operands[1]
                : operands[1] is RefArg r1 && r1.Node == node.Name ? operands[0] : null;
            if (other is not null && Factors(other, graph, container, conv) is { } factors) return new Site(node, op, factors);
        }
        return null;
    }

    /// <summary>The two operands of a mul/add node, positional or by keyword; null for any other argument list.</summary>
    private static GraphArg[]? Operands(GraphNode op)
    {
        string[] names = op.Op == NodeOp.CallMethod ? ["self", "other"] : ["input", "other"];
        if (op.Args.Length > 2) return null;
        var result = new GraphArg?[2];
        for (var i = 0; i < op.Args.Length; i++) result[i] = op.Args[i];
        foreach (var kv in op.Kwargs)
        {
            var i = Array.IndexOf(names, kv.Key);
            if (i < 0 || result[i] is not null) return null;
            result[i] = kv.Value;
        }
        return result[0] is { } a && result[1] is { } b ? [a, b] : null;
    }

    /// <summary>The per-channel factors of a constant operand (one, or one per output channel), or null when it is not one.</summary>
    private static double[]? Factors(GraphArg arg, Graph graph, UserModule container, Conv conv)
    {
        double[]? values = arg switch
        {
            ConstArg { Value: long l } => [l],
            ConstArg { Value: double d } => [d],
            RefArg r => graph.Nodes.First(n => n.Name == r.Node) is { Op: NodeOp.GetAttr } attr && Attribute(container, attr.Target!) is { } t
                ? PerChannel(t, conv)
                : null,
            _ => null,
        };
        return values is not null && values.All(double.IsFinite) ? values : null;
    }

    /// <summary>The values of <paramref name="t"/> by output channel when it broadcasts against <c>[N, C, *spatial]</c> as a
    /// per-channel constant; null otherwise.</summary>
    private static double[]? PerChannel(Tensor t, Conv conv)
    {
        if (t.DType != DType.Float32) return null;
        var s = t.Shape;
        var spatial = conv.Rank;
        if (s.Length > spatial + 2 || (s.Length == spatial + 2 && s[0] != 1)) return null;
        for (var k = 1; k <= Math.Min(spatial, s.Length); k++)
            if (s[^k] != 1) return null;
        var channels = s.Length > spatial ? s[^(spatial + 1)] : 1;
        if (channels != 1 && channels != conv.OutChannels) return null;
        var data = t.Float32;
        var values = new double[channels];
        for (var c = 0; c < channels; c++) values[c] = data[c];
        return values;
    }

    /// <summary>The tensor a <c>get_attr</c> reads, as the interpreter resolves it; null when there is none.</summary>
    private static Tensor? Attribute(UserModule container, string target)
    {
        var dot = target.LastIndexOf('.');
        Module owner = container;
        if (dot >= 0 && !ModulePath.TryGet(container, target[..dot], out owner)) return null;
        return owner.State.TryGet(dot < 0 ? target : target[(dot + 1)..]);
    }

    /// <summary><paramref name="graph"/> without <paramref name="op"/>, its readers reading <paramref name="replacement"/>, and
    /// without a get_attr node only <paramref name="op"/> read.</summary>
    private static Graph Remove(Graph graph, GraphNode op, string replacement)
    {
        var orphans = op.Inputs.Where(i => i != replacement).Distinct()
            .Where(i => graph.Nodes.First(n => n.Name == i).Op == NodeOp.GetAttr && graph.Consumers(i).All(c => c.Name == op.Name))
            .ToHashSet(StringComparer.Ordinal);
        var nodes = graph.Nodes
            .Where(n => n.Name != op.Name && !orphans.Contains(n.Name))
            .Select(n => n.Inputs.Contains(op.Name)
                ? new GraphNode(n.Op, n.Name, n.Target, n.Args.Select(a => Substitute(a, op.Name, replacement)),
                    n.Kwargs.Select(kv => KeyValuePair.Create(kv.Key, Substitute(kv.Value, op.Name, replacement))))
                : n);
        return new Graph(nodes);
    }

    private static GraphArg Substitute(GraphArg arg, string from, string to) => arg switch
    {
        RefArg r when r.Node == from => GraphArg.Ref(to),
        ListArg l => GraphArg.List(l.Items.Select(i => Substitute(i, from, to)).ToArray()),
        _ => arg,
    };

}
