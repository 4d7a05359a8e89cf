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
                Activation { Kind: ActivationKind.ReLU6 } => KeepLayout(q, new QuantizedReLU6().Forward(q)),
                Activation { Kind: ActivationKind.Hardsigmoid } => KeepLayout(q, new QuantizedHardsigmoid().Forward(q)),
                OpaqueModule { Namespace: "torch.nn", TypeName: "Sigmoid" } => KeepLayout(q, new QuantizedSigmoid().Forward(q)),
                OpaqueModule { Namespace: "torch.nn", TypeName: "Upsample" or "UpsamplingNearest2d" or "UpsamplingBilinear2d" } o
                    => KeepLayout(q, new QuantizedUpsample(Interpolation.FromModule(o)).Forward(q, IsChannelsLast(q))),
                Identity => q,
                Dropout d when !d.Training => q,
                Flatten f => new QuantizedFlatten(f.StartDim, f.EndDim).Forward(q),
                MaxPool2d p => KeepLayout(q, new QuantizedMaxPool2d((p.KernelSize[0], p.KernelSize[1]), (p.Stride[0], p.Stride[1]),
                    (p.Padding[0], p.Padding[1]), (p.Dilation[0], p.Dilation[1]), p.CeilMode).Forward(q, Cores)),
                AvgPool2d p => KeepLayout(q, new QuantizedAvgPool2d((p.KernelSize[0], p.KernelSize[1]), (p.Stride[0], p.Stride[1]),
                    (p.Padding[0], p.Padding[1]), p.CeilMode, p.CountIncludePad).Forward(q, IsChannelsLast(q))),
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
                QuantizedConv c => Layout(c.Forward(q, Cores), channelsLast: true),
                // PyTorch's onednn transposed convolution writes channels-last output too (measured on 1.13).
                QuantizedConvTranspose c => Layout(c.Forward(q, Cores), channelsLast: true),
                // PyTorch's quantized batch norm writes channels-last output, as its convolutions do.
                QuantizedBatchNorm b => Layout(b.Forward(q), channelsLast: true),
                QuantizedLinear l => l.Forward(q, Cores),
                QuantizedLayerNorm n => n.Forward(q),
                QuantizedGroupNorm g => g.Forward(q),
                // PyTorch allocates ELU's output contiguous, whatever its input's layout (measured on 1.13); Hardswish
                // and LeakyReLU keep their input's.
                QuantizedELU e => e.Forward(q),
                QuantizedActivation a => KeepLayout(q, a.Forward(q)),
                QuantizedReLU6 r => KeepLayout(q, r.Forward(q)),
                // quantized::prelu allocates its output in its input's memory format (measured on 1.13).
                QuantizedPReLU p => KeepLayout(q, p.Forward(q)),
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
    /// <c>ff.activation_post_process</c> computes the whole operation; the nodes it absorbs compute nothing.
    /// <paramref name="Deferred"/>: the convolutions whose only use is an operand of a converted add or add_relu (and the
    /// Identity modules between them, which pass the deferred convolution on); a forward that records no layer outputs
    /// runs each inside its add (<see cref="QuantizedConv.ForwardAdd"/>).</summary>
    private sealed record FunctionalCalls(Dictionary<string, (string Op, string FloatFunctional, GraphNode Call)> Calls, HashSet<string> Absorbed,
        HashSet<string> Deferred);

    /// <summary>A convolution not run yet: its add runs it (see <see cref="FunctionalCalls.Deferred"/>).</summary>
    private sealed record DeferredConv(string Node, Module Module, QuantizedLayer Layer, object? Input, string Path);

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
        var deferred = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (kind, _, call) in calls.Values)
        {
            if (kind is not ("add" or "add_relu")) continue;
            // The first operand that is a converted convolution used by this add alone, directly or through Identity
            // modules (a BatchNorm that fusion folded away) that pass it on.
            foreach (var r in call.Args.OfType<RefArg>())
            {
                var through = new List<string>();
                var n = byName.GetValueOrDefault(r.Node);
                while (n is { Op: NodeOp.CallModule, Target: { } t, Args: [RefArg inner] } && users.GetValueOrDefault(n.Name) == 1
                       && ModulePath.TryGet(owner, t, out var m) && m is Identity && !layers.ContainsKey(ModulePath.Join(path, t)))
                {
                    through.Add(n.Name);
                    n = byName.GetValueOrDefault(inner.Node);
                }
                if (n is { Op: NodeOp.CallModule, Target: { } ct } && users.GetValueOrDefault(n.Name) == 1
                    && layers.TryGetValue(ModulePath.Join(path, ct), out var l) && l.Module is QuantizedConv)
                {
                    deferred.Add(n.Name);
                    deferred.UnionWith(through);
                    break;
                }
            }
        }
        return _functional[graph] = new FunctionalCalls(calls, absorbed, deferred);
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
                    var modulePath = ModulePath.Join(path, target);
                    var x = Resolve(node.Args[0], values, node);
                    // Recording wants every layer's own output, so only a plain forward joins a convolution to its add.
                    value = record || !ff.Deferred.Contains(node.Name) ? Call(module, x, modulePath)
                        : x is DeferredConv passed ? passed
                        : new DeferredConv(node.Name, module, layers[modulePath], x, modulePath);
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
        try
        {
            var a = Bind(call, values);
            QuantizedTensor Q(object? v) => v as QuantizedTensor
                ?? throw new ArgumentException($"FloatFunctional '{ffPath}'.{op} takes quantized tensors, got {Describe(v)}; a QuantStub must run before it");
            if (op is "add" or "add_relu")
            {
                if (FusedAdd(f, op == "add_relu", a.Value("input"), a.Value("other")) is { } fused) return Record(ffPath, fused);
                // Not a pair the fused pass takes: the convolution runs on its own, then the plain add (which refuses what is wrong).
                if (Undefer(values, a.Value("input")) | Undefer(values, a.Value("other"))) a = Bind(call, values);
            }
            if (op != "cat" && a.Value("other") is not QuantizedTensor)
                throw new ArgumentException($"FloatFunctional '{ffPath}'.{op} with a scalar ({op}_scalar) has no quantized form here");
            var y = op switch
            {
                "add" => KeepLayout(Q(a.Value("input")), f.Add(Q(a.Value("input")), Q(a.Value("other")), Cores)),
                "add_relu" => KeepLayout(Q(a.Value("input")), f.AddRelu(Q(a.Value("input")), Q(a.Value("other")), Cores)),
                "mul" => Layout(f.Mul(Q(a.Value("input")), Q(a.Value("other"))), IsChannelsLast(a.Value("input")) || IsChannelsLast(a.Value("other"))),
                "cat" => Cat(f, (a.Value("tensors") as IReadOnlyList<object?> ?? throw a.Error("tensors", "a list of quantized tensors")).Select(Q).ToList(),
                    (int)a.Long("dim")),
                _ => throw new InvalidOperationException(op),
            };
            return Record(ffPath, y);
        }
        catch (Exception e) when (e is ArgumentException or GraphCallException && !e.Message.StartsWith("FloatFunctional", StringComparison.Ordinal))
        {
            throw new ArgumentException($"FloatFunctional '{ffPath}'.{op}: {e.Message}", e);
        }
    }

    /// <summary>An add whose operand is a deferred convolution, run as one pass when the pair fits
    /// (<see cref="QuantizedConv.ForwardAdd"/>), channels-last when the add's first operand is (a convolution's
    /// output is); null otherwise.</summary>
    private QuantizedTensor? FusedAdd(QFunctional f, bool relu, object? input, object? other)
    {
        var (deferred, rest, first) = input is DeferredConv d1 ? (d1, other, true) : other is DeferredConv d2 ? (d2, input, false) : (null, null, false);
        if (deferred is null || rest is not QuantizedTensor residual || deferred.Input is not QuantizedTensor x || deferred.Layer.Module is not QuantizedConv conv)
            return null;
        try { return conv.ForwardAdd(x, residual, f, relu, Cores) is { } y ? Layout(y, first || IsChannelsLast(rest)) : null; }
        catch (ArgumentException e) { throw Refuse(deferred.Path, deferred.Module, e.Message); }
    }

    /// <summary>Runs a deferred convolution on its own and puts its output where its node's value goes; false when
    /// <paramref name="v"/> is no deferred convolution.</summary>
    private bool Undefer(Dictionary<string, object?> values, object? v)
    {
        if (v is not DeferredConv d) return false;
        values[d.Node] = Call(d.Module, d.Input, d.Path);
        return true;
    }

    /// <summary>QFunctional.cat; channels-last inputs concatenated along channels give a channels-last result, as
    /// PyTorch's NHWC fast path does.</summary>
    private QuantizedTensor Cat(QFunctional f, List<QuantizedTensor> parts, int dim)
        => Layout(f.Cat(parts, dim), parts.Count > 0 && parts.All(p => IsChannelsLast(p)) && (dim == 1 || dim == -3));

    /// <summary>The node's call matched to its operation in the core's <see cref="GraphOps"/> table, as the engine and
    /// the ONNX exporter read it.</summary>
    private static OpCall Bind(GraphNode node, Dictionary<string, object?> values)
    {
        var op = GraphOps.Of(node) ?? throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) has no quantized form here");
        return op.Bind(node, a => Resolve(a, values, node), Describe);
    }

    /// <summary>A graph operation of the quantized forward: the interpreter (for the channels-last bookkeeping) and the
    /// bound call in, the result out.</summary>
    private delegate object? QuantizedOperation(QuantizedInterpreter it, OpCall a);

    /// <summary>A pooling argument as (height, width): one integer for both, or two.</summary>
    private static (int, int) Pair(int[] v) => v.Length switch
    {
        1 => (v[0], v[0]),
        2 => (v[0], v[1]),
        _ => throw new ArgumentException($"a pooling argument takes one or two integers, got {v.Length}"),
    };

    private static QuantizedTensor Self(OpCall a) => a.Get<QuantizedTensor>(a.Op.Parameters[0].Name, "a quantized tensor");

    /// <summary>The graph operations a quantized tensor (or a Python value computed from one) goes through in PyTorch's
    /// quantized models, by the target name of <see cref="GraphOps"/> (function and method alike).</summary>
    private static readonly Dictionary<string, QuantizedOperation> Operations = new(StringComparer.Ordinal)
    {
        ["relu"] = (it, a) => it.KeepLayout(Self(a), new QuantizedReLU().Forward(Self(a))),
        ["relu6"] = (it, a) => it.KeepLayout(Self(a), new QuantizedReLU6().Forward(Self(a))),
        ["hardsigmoid"] = (it, a) => it.KeepLayout(Self(a), new QuantizedHardsigmoid().Forward(Self(a))),
        ["sigmoid"] = (it, a) => it.KeepLayout(Self(a), new QuantizedSigmoid().Forward(Self(a))),
        ["flatten"] = (_, a) => new QuantizedFlatten((int)a.Long("start_dim"), (int)a.Long("end_dim")).Forward(Self(a)),
        ["contiguous"] = (_, a) => Self(a),
        ["reshape"] = (_, a) => Self(a).Reshape(Tensor.ResolveShape(a.IntList("shape"), Self(a).Count)),
        ["view"] = (_, a) => Self(a).Reshape(Tensor.ResolveShape(a.IntList("shape"), Self(a).Count)),
        ["transpose"] = (_, a) => new QuantizedTranspose((int)a.Long("dim0"), (int)a.Long("dim1")).Forward(Self(a)),
        ["chunk"] = (_, a) => new QuantizedChunk((int)a.Long("chunks"), (int)a.Long("dim")).Forward(Self(a)).Cast<object?>().ToList(),
        ["mean"] = (it, a) => a.DTypeName("dtype") is not null ? throw a.Error("dtype", "None (a quantized mean keeps its dtype)")
            : new QuantizedMean(a.IntList("dim"), a.Flag("keepdim")).Forward(Self(a), it.IsChannelsLast(Self(a))),
        ["interpolate"] = (it, a) =>
        {
            var q = Self(a);
            var spec = Interpolation.FromArguments(a.Value("size"), a.Value("scale_factor"), a.Value("mode"), a.Value("align_corners"),
                a.Value("recompute_scale_factor"), a.Value("antialias"));
            return it.KeepLayout(q, new QuantizedUpsample(spec).Forward(q, it.IsChannelsLast(q)));
        },
        ["adaptive_avg_pool2d"] = (it, a) =>
        {
            var (h, w) = a.SizePair("output_size");
            var q = Self(a);
            return it.KeepLayout(q, new QuantizedAdaptiveAvgPool2d((h ?? q.Size(-2), w ?? q.Size(-1))).Forward(q, it.IsChannelsLast(q)));
        },
        ["max_pool2d"] = (it, a) =>
        {
            if (a.Flag("return_indices")) throw a.Error("return_indices", "False (a quantized max pool returns no indices)");
            var q = Self(a);
            var (k, s, p, d) = (Pair(a.IntList("kernel_size")), Pair(a.IntListOr("stride", a.IntList("kernel_size"))), Pair(a.IntList("padding")), Pair(a.IntList("dilation")));
            return it.KeepLayout(q, new QuantizedMaxPool2d(k, s, p, d, a.Flag("ceil_mode")).Forward(q, it.Cores));
        },
        ["avg_pool2d"] = (it, a) =>
        {
            var q = Self(a);
            var (k, s, p) = (Pair(a.IntList("kernel_size")), Pair(a.IntListOr("stride", a.IntList("kernel_size"))), Pair(a.IntList("padding")));
            var divisor = a.OptionalLong("divisor_override");
            return it.KeepLayout(q, new QuantizedAvgPool2d(k, s, p, a.Flag("ceil_mode"), a.Flag("count_include_pad"), divisor is { } v ? checked((int)v) : null)
                .Forward(q, it.IsChannelsLast(q)));
        },
        ["size"] = (_, a) =>
        {
            // Also on a float tensor (a model may read its input's batch size before its QuantStub).
            var dims = a.Value("self") is Tensor t ? t.Dimensions : Self(a).Dimensions;
            return a.OptionalLong("dim") is { } d
                ? (long)dims[Dimensions.Wrap(d, dims.Length) ?? throw a.Error("dim", $"a dimension of a rank-{dims.Length} tensor")]
                : dims.Select(v => (object?)(long)v).ToList();
        },
        ["getitem"] = (_, a) => a.Value("a") is IReadOnlyList<object?> list ? PySequence.GetItem(list, a.Value("b")) : throw a.Error("a", "a tuple or list"),
        ["floordiv"] = (_, a) => (a.Value("input"), a.Value("other")) is (long x, long y) && y != 0
            ? x / y - (x % y != 0 && (x < 0) != (y < 0) ? 1 : 0)
            : throw a.Error("other", "a nonzero integer, with an integer input"),
    };

    /// <summary>The names of the graph operations the quantized forward runs (<see cref="Operations"/>), for the exporters'
    /// completeness checks.</summary>
    internal static IReadOnlyCollection<string> OperationNames => Operations.Keys;

    /// <summary>A graph operation through the table; a float tensor reaching one is refused (float parts stay inside modules).</summary>
    private object? Operation(GraphNode node, Dictionary<string, object?> values, string path)
    {
        try
        {
            var a = Bind(node, values);
            if (a.Value(a.Op.Parameters[0].Name) is Tensor t && a.Op.Name != "size")
                throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) in '{Show(path)}' is a float operation on {Describe(t)}; the quantized forward runs graph operations on quantized tensors only (keep float parts inside modules)");
            if (!Operations.TryGetValue(a.Op.Name, out var run))
                throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) has no quantized form here");
            return run(this, a);
        }
        catch (GraphCallException e)
        {
            throw new ArgumentException($"{e.Message} (in '{Show(path)}')", e);
        }
        catch (ArgumentException e) when (!e.Message.StartsWith("graph node", StringComparison.Ordinal))
        {
            throw new ArgumentException($"graph node '{node.Name}' ({node.Target}) in '{Show(path)}': {e.Message}", e);
        }
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
