using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// One quantized forward pass over a converted model: values are float <see cref="Tensor"/>s or
/// <see cref="QuantizedTensor"/>s (and plain Python values in graphs). Converted paths run their quantized layer;
/// containers run their children or graph; a float value through an unconverted module runs in the float engine; a
/// quantized value runs through the modules PyTorch's float modules accept quantized tensors for.
/// </summary>
internal sealed class QuantizedInterpreter(ImmutableDictionary<string, QuantizedLayer> layers, int? threads, bool record = true)
{
    private const string ActivationPostProcess = ".activation_post_process";

    /// <summary>Each converted layer's last output (a DeQuantize's input), when the interpreter records them.</summary>
    public Dictionary<string, QuantizedTensor> Outputs { get; } = new(StringComparer.Ordinal);

    /// <summary>The cores the int8 kernels take (every core when the caller did not say).</summary>
    private int Cores => threads ?? Environment.ProcessorCount;

    private readonly Dictionary<Graph, FunctionalCalls> _functional = new(ReferenceEqualityComparer.Instance);

    /// <summary>The values PyTorch would hold in channels-last memory: quantized convolutions return that layout on the
    /// onednn engine, and ReLU, pooling and QFunctional's element-wise operations keep it. It decides which
    /// AdaptiveAvgPool2d kernel PyTorch runs, and the two round differently.</summary>
    private readonly HashSet<QuantizedTensor> _channelsLast = new(ReferenceEqualityComparer.Instance);

    private bool IsChannelsLast(object? v) => v is QuantizedTensor q && _channelsLast.Contains(q);

    private QuantizedTensor KeepLayout(QuantizedTensor from, QuantizedTensor y) => Layout(y, IsChannelsLast(from));

    private QuantizedTensor Layout(QuantizedTensor y, bool channelsLast)
    {
        if (channelsLast && y.Rank == 4) _channelsLast.Add(y);
        return y;
    }

    public object? Call(Module m, object? x, string path)
    {
        if (layers.TryGetValue(path, out var layer)) return RunLayer(layer, m, x, path);
        switch (m)
        {
            case UserModule { Forward: { } graph } u:
                return RunGraph(u, graph, x, path);
            case UserModule { IsIdentityStub: true }:
                return x;
            // A container holding converted layers (a Sequential whose first child is the QuantStub) runs child by
            // child even on a float input; only a wholly float one runs in the float engine.
            case Sequential or FusedModule when x is QuantizedTensor || HasLayersBelow(path):
            {
                var v = x;
                foreach (var c in m.Children) v = Call(c.Module, v, ModulePath.Join(path, c.Name));
                return v;
            }
        }
        if (x is Tensor t)
        {
            try { return Engine.Forward.Run(m, t, new ForwardOptions { Threads = threads }); }
            catch (ForwardException e) { throw new ArgumentException($"module '{Show(path)}' ({m.TypeName}), kept float: {e.Message}", e); }
        }
        if (x is not QuantizedTensor q) throw Refuse(path, m, $"takes a tensor, got {Describe(x)}");
        try
        {
            return m switch
            {
                Activation { Kind: ActivationKind.ReLU } => KeepLayout(q, new QuantizedReLU().Forward(q)),
                Identity => q,
                Dropout d when !d.Training => q,
                Flatten f => new QuantizedFlatten(f.StartDim, f.EndDim).Forward(q),
                MaxPool2d p => KeepLayout(q, new QuantizedMaxPool2d((p.KernelSize[0], p.KernelSize[1]), (p.Stride[0], p.Stride[1]),
                    (p.Padding[0], p.Padding[1]), (p.Dilation[0], p.Dilation[1]), p.CeilMode).Forward(q)),
                AdaptiveAvgPool2d p => KeepLayout(q, new QuantizedAdaptiveAvgPool2d((p.OutputSize[0], p.OutputSize[1])).Forward(q, IsChannelsLast(q))),
                _ => throw Refuse(path, m, "receives a quantized tensor, but has no quantized forward here (PyTorch's would fail too, or this project lacks it); keep it float with a None qconfig and a DeQuantStub before it"),
            };
        }
        catch (ArgumentException e) when (!e.Message.StartsWith("module '", StringComparison.Ordinal))
        {
            throw Refuse(path, m, e.Message);
        }
    }

    private bool HasLayersBelow(string path)
        => path.Length == 0 ? !layers.IsEmpty : layers.Keys.Any(k => k.StartsWith(path + ".", StringComparison.Ordinal));

    private object? RunLayer(QuantizedLayer layer, Module m, object? x, string path)
    {
        switch (layer.TypeName)
        {
            case "Quantize":
                if (x is not Tensor t) throw Refuse(path, m, $"(Quantize) takes a float tensor, got {Describe(x)}");
                return Record(path, QuantizedTensor.Quantize(t, layer.Scale!.Value, layer.ZeroPoint!.Value, layer.DType!.Value));
            case "DeQuantize":
                if (x is not QuantizedTensor dq) throw Refuse(path, m, $"(DeQuantize) takes a quantized tensor, got {Describe(x)}");
                Record(path, dq);
                return dq.Dequantize();
            case "QFunctional":
                throw Refuse(path, m, "(FloatFunctional) is called as a module; its add/add_relu/mul/cat calls are the quantized operations");
        }
        if (x is not QuantizedTensor q)
            throw Refuse(path, m, $"({layer.TypeName}) takes a quantized tensor, got {Describe(x)}; a QuantStub must run before it");
        try
        {
            return Record(path, layer.Module switch
            {
                QuantizedConv2d c => Layout(c.Forward(q, Cores), channelsLast: true),
                QuantizedLinear l => l.Forward(q, Cores),
                _ => throw new InvalidOperationException($"unknown quantized layer {layer.TypeName}"),
            });
        }
        catch (ArgumentException e) { throw Refuse(path, m, e.Message); }
    }

    private QuantizedTensor Record(string path, QuantizedTensor y)
    {
        // Kept only when asked: holding every layer's output to the end keeps them all alive through the pass.
        if (record) Outputs[path] = y;
        return y;
    }

    // ---- graphs -------------------------------------------------------------------------------------------

    /// <summary>The traced operations of converted <c>FloatFunctional</c>s in one graph: the node that calls
    /// <c>ff.activation_post_process</c> computes the whole operation; the nodes it absorbs compute nothing.</summary>
    private sealed record FunctionalCalls(Dictionary<string, (string Op, string FloatFunctional, GraphNode Call)> Calls, HashSet<string> Absorbed);

    private FunctionalCalls FindFunctionalCalls(UserModule owner, Graph graph, string path)
    {
        if (_functional.TryGetValue(graph, out var found)) return found;
        var byName = graph.Nodes.ToDictionary(n => n.Name, StringComparer.Ordinal);
        var users = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var n in graph.Nodes)
            foreach (var r in n.Inputs) users[r] = users.GetValueOrDefault(r) + 1;
        var calls = new Dictionary<string, (string, string, GraphNode)>(StringComparer.Ordinal);
        var absorbed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var n in graph.Nodes)
        {
            if (n.Op != NodeOp.CallModule || !n.Target!.EndsWith(ActivationPostProcess, StringComparison.Ordinal)) continue;
            var ffPath = ModulePath.Join(path, n.Target[..^ActivationPostProcess.Length]);
            if (!layers.TryGetValue(ffPath, out var layer) || layer.TypeName != "QFunctional") continue;
            if (n.Args.Length != 1 || n.Args[0] is not RefArg { Node: var inner } || !byName.TryGetValue(inner, out var op) || users.GetValueOrDefault(inner) != 1)
                throw new ArgumentException($"graph node '{n.Name}' calls '{n.Target}' on something other than the single result of a FloatFunctional operation; convert cannot tell which quantized operation it is");
            absorbed.Add(op.Name);
            string kind;
            var call = op;
            if (IsCall(op, "relu") && op.Args.Length >= 1 && op.Args[0] is RefArg { Node: var addName } && byName.TryGetValue(addName, out var add)
                && IsCall(add, "add") && users.GetValueOrDefault(addName) == 1)
            {
                absorbed.Add(addName);
                kind = "add_relu";
                call = add;
            }
            else if (IsCall(op, "add")) kind = "add";
            else if (IsCall(op, "mul")) kind = "mul";
            else if (IsCall(op, "cat")) kind = "cat";
            else throw new ArgumentException($"graph node '{n.Name}': FloatFunctional '{ffPath}' observes the result of '{op.Target}', which has no quantized form here (add, add_relu, mul and cat have)");
            calls[n.Name] = (kind, ffPath, call);
        }
        return _functional[graph] = new FunctionalCalls(calls, absorbed);
    }

    private static bool IsCall(GraphNode n, string target) => n.Op is NodeOp.CallFunction or NodeOp.CallMethod && n.Target == target;

    private object? RunGraph(UserModule owner, Graph graph, object? input, string path)
    {
        var ff = FindFunctionalCalls(owner, graph, path);
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        bool placeholder = false;
        foreach (var node in graph.Nodes)
        {
            if (ff.Absorbed.Contains(node.Name)) continue;
            object? value;
            switch (node.Op)
            {
                case NodeOp.Placeholder:
                    if (placeholder) throw new ArgumentException($"'{Show(path)}': the graph takes more than one input");
                    placeholder = true;
                    value = input;
                    break;
                case NodeOp.Output:
                    return Resolve(node.Args[0], values, node);
                case NodeOp.CallModule when ff.Calls.TryGetValue(node.Name, out var call):
                    value = RunFunctional(call.Op, call.FloatFunctional, call.Call, values);
                    break;
                case NodeOp.CallModule:
                {
                    var target = node.Target!;
                    var module = ModulePath.Get(owner, target);
                    if (node.Args.Length != 1) throw new ArgumentException($"graph node '{node.Name}' calls '{target}' with {node.Args.Length} arguments; a quantized forward calls modules on one tensor");
                    value = Call(module, Resolve(node.Args[0], values, node), ModulePath.Join(path, target));
                    break;
                }
                case NodeOp.CallFunction:
                case NodeOp.CallMethod:
                    value = Operation(node, values, path);
                    break;
                default:
                    throw new ArgumentException($"graph node '{node.Name}' ({node.Op}) has no quantized form here");
            }
            values[node.Name] = value;
        }
        throw new ArgumentException($"'{Show(path)}': the graph has no output node");
    }

    private object? RunFunctional(string op, string ffPath, GraphNode call, Dictionary<string, object?> values)
    {
        var f = (QFunctional)layers[ffPath].Module!;
        QuantizedTensor Q(object? v) => v as QuantizedTensor
            ?? throw new ArgumentException($"FloatFunctional '{ffPath}'.{op} takes quantized tensors, got {Describe(v)}; a QuantStub must run before it");
        try
        {
            var y = op switch
            {
                "add" or "add_relu" or "mul" when Arg(call, 1, "other", values) is not QuantizedTensor
                    => throw new ArgumentException($"FloatFunctional '{ffPath}'.{op} with a scalar ({op}_scalar) has no quantized form here"),
                "add" => KeepLayout(Q(Arg(call, 0, "input", values)), f.Add(Q(Arg(call, 0, "input", values)), Q(Arg(call, 1, "other", values)))),
                "add_relu" => KeepLayout(Q(Arg(call, 0, "input", values)), f.AddRelu(Q(Arg(call, 0, "input", values)), Q(Arg(call, 1, "other", values)))),
                "mul" => KeepLayout(Q(Arg(call, 0, "input", values)), f.Mul(Q(Arg(call, 0, "input", values)), Q(Arg(call, 1, "other", values)))),
                "cat" => Cat(f, ((IEnumerable<object?>)(Arg(call, 0, "tensors", values) ?? Array.Empty<object?>())).Select(Q).ToList(),
                    (int)(long)(Arg(call, 1, "dim", values) ?? 0L)),
                _ => throw new InvalidOperationException(op),
            };
            return Record(ffPath, y);
        }
        catch (ArgumentException e) when (!e.Message.StartsWith("FloatFunctional", StringComparison.Ordinal))
        {
            throw new ArgumentException($"FloatFunctional '{ffPath}'.{op}: {e.Message}", e);
        }
    }

    /// <summary>QFunctional.cat; channels-last inputs concatenated along channels give a channels-last result, as
    /// PyTorch's NHWC fast path does.</summary>
    private QuantizedTensor Cat(QFunctional f, List<QuantizedTensor> parts, int dim)
        => Layout(f.Cat(parts, dim), parts.Count > 0 && parts.All(p => IsChannelsLast(p)) && (dim == 1 || dim == -3));

    /// <summary>The graph operations a quantized tensor goes through in PyTorch's quantized models.</summary>
    private object? Operation(GraphNode node, Dictionary<string, object?> values, string path)
    {
        var method = node.Op == NodeOp.CallMethod;
        var self = Arg(node, 0, method ? "self" : "input", values);
        if (self is not QuantizedTensor q)
        {
            if (node.Target == "size" && self is QuantizedTensor or Tensor) return Size(self, node, values);
            throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) in '{Show(path)}' is a float operation on {Describe(self)}; the quantized forward runs graph operations on quantized tensors only (keep float parts inside modules)");
        }
        try
        {
            switch (node.Target)
            {
                case "relu":
                    return KeepLayout(q, new QuantizedReLU().Forward(q));
                case "flatten":
                    return new QuantizedFlatten((int)(long)(Arg(node, 1, "start_dim", values) ?? 0L), (int)(long)(Arg(node, 2, "end_dim", values) ?? -1L)).Forward(q);
                case "contiguous":
                    return q;
                case "reshape" or "view":
                {
                    var dims = node.Args.Length == 2 ? Arg(node, 1, "shape", values) : node.Args.Skip(1).Select(a => Resolve(a, values, node)).ToList();
                    var shape = (dims is IEnumerable<object?> list ? list : [dims]).Select(d => (int)(long)d!).ToArray();
                    return q.Reshape(Tensor.ResolveShape(shape, q.Count));
                }
                case "size":
                    return Size(q, node, values);
                case "adaptive_avg_pool2d":
                {
                    var o = Arg(node, 1, "output_size", values);
                    var s = o is IEnumerable<object?> l ? l.Select(v => (int)(long)v!).ToArray() : [(int)(long)o!, (int)(long)o!];
                    return KeepLayout(q, new QuantizedAdaptiveAvgPool2d((s[0], s[1])).Forward(q, IsChannelsLast(q)));
                }
                default:
                    throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) has no quantized form here");
            }
        }
        catch (ArgumentException e) when (!e.Message.StartsWith("graph node", StringComparison.Ordinal))
        {
            throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) in '{Show(path)}': {e.Message}", e);
        }
    }

    private static object Size(object? t, GraphNode node, Dictionary<string, object?> values)
    {
        var dims = t switch { QuantizedTensor q => q.Dimensions.ToArray(), Tensor f => f.Shape.ToArray(), _ => [] };
        return Arg(node, 1, "dim", values) is long d
            ? (long)dims[Dimensions.Wrap(d, dims.Length) ?? throw new ArgumentException($"graph node '{node.Name}': size dim {d} is out of range for rank {dims.Length}")]
            : dims.Select(v => (object?)(long)v).ToList();
    }

    private static object? Arg(GraphNode node, int index, string name, Dictionary<string, object?> values)
    {
        if (index < node.Args.Length) return Resolve(node.Args[index], values, node);
        return node.Kwarg(name) is { } k ? Resolve(k, values, node) : null;
    }

    private static object? Resolve(GraphArg a, Dictionary<string, object?> values, GraphNode node) => a switch
    {
        RefArg r => values.TryGetValue(r.Node, out var v) ? v : throw new ArgumentException($"graph node '{node.Name}' reads '{r.Node}', which is computed inside a FloatFunctional operation or not at all"),
        ConstArg c => c.Value,
        ListArg l => l.Items.Select(i => Resolve(i, values, node)).ToList(),
        _ => throw new ArgumentException($"graph node '{node.Name}': an argument of an unknown kind"),
    };

    private static string Show(string path) => path.Length == 0 ? "<root>" : path;

    private static ArgumentException Refuse(string path, Module m, string problem) => new($"module '{Show(path)}' ({m.TypeName}) {problem}");

    /// <summary>A value's kind, for messages.</summary>
    public static string Describe(object? v) => v switch
    {
        null => "None",
        QuantizedTensor q => $"a quantized tensor {Tensor.ShapeString(q.Dimensions.ToArray())}",
        Tensor t => $"a float tensor {Tensor.ShapeString(t.Shape)}",
        _ => v.GetType().Name,
    };
}
