using System.Collections.Frozen;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The library modules the project carries as <see cref="OpaqueModule"/>s that the engine nevertheless computes, keyed
/// by (namespace, type name): each with its <c>forward</c>'s parameters in PyTorch's order (a graph node's arguments
/// are bound to them as a function call's are, through <see cref="GraphOp"/>) and an evaluator that reads the module's
/// recorded attributes and state. A module without an entry is refused as unsupported.
/// </summary>
internal static class CarriedModules
{
    private delegate object? Forward(Evaluator ev, OpaqueModule m, OpCall call);

    private sealed record Carried(GraphOp Signature, Forward Run);

    private static OpParameter P(string name) => new(name);
    private static OpParameter Opt(string name, object? fallback = null) => new(name, true, fallback);

    private static Carried Entry(string type, OpParameter[] parameters, Forward run) => new(new GraphOp(NodeOp.CallModule, type, parameters), run);

    /// <summary>A module whose forward takes one tensor <c>input</c>.</summary>
    private static Carried Unary(string type, Func<Evaluator, OpaqueModule, Tensor, Tensor> run)
        => Entry(type, [P("input")], (ev, m, c) => run(ev, m, c.Get<Tensor>("input", "a tensor")));

    private static readonly string[] DropoutTypes = ["Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"];

    private static readonly FrozenDictionary<(string Namespace, string Type), Carried> Table = new Dictionary<(string, string), Carried>
    {
        [("torch.nn", "Sigmoid")] = Unary("Sigmoid", (ev, _, x) => TensorOps.Activation(x, Act.Sigmoid, ev.Pass)),
        [("torch.nn", "Tanh")] = Unary("Tanh", (ev, _, x) => PointwiseKernels.Tanh(x, ev.Pass)),
        [("torch.nn", "GELU")] = Unary("GELU", (ev, m, x) => PointwiseKernels.Gelu(x, PointwiseKernels.GeluOf(Arg(m, "approximate", "none") as string), ev.Pass)),
        [("torch.nn", "Hardtanh")] = Unary("Hardtanh", (ev, m, x) => PointwiseKernels.Hardtanh(x, Number(m, "min_val"), Number(m, "max_val"), ev.Pass)),
        [("torch.nn", "LeakyReLU")] = Unary("LeakyReLU", (ev, m, x) => PointwiseKernels.LeakyRelu(x, Number(m, "negative_slope"), ev.Pass)),
        [("torch.nn", "PReLU")] = Unary("PReLU", (ev, m, x) => PointwiseKernels.PRelu(x,
            m.State.TryGet("weight") ?? throw new EngineInputException("PReLU has no weight in its state"), ev.Pass)),
        [("torch.nn", "Upsample")] = Unary("Upsample", Upsample),
        [("torch.nn", "UpsamplingNearest2d")] = Unary("UpsamplingNearest2d", Upsample),
        [("torch.nn", "UpsamplingBilinear2d")] = Unary("UpsamplingBilinear2d", Upsample),
        [("torch.nn", "ELU")] = Unary("ELU", (ev, m, x) => PointwiseKernels.Elu(x, Number(m, "alpha"), ev.Pass)),
        [("torch.nn", "GroupNorm")] = Unary("GroupNorm", (ev, m, x) => NormKernels.GroupNorm(x, Int(m, "num_groups"),
            m.State.TryGet("weight"), m.State.TryGet("bias"), Number(m, "eps"), ev.Pass)),
        [("torch.nn", "InstanceNorm1d")] = Unary("InstanceNorm1d", (ev, m, x) => InstanceNorm(ev, m, x, 1)),
        [("torch.nn", "InstanceNorm2d")] = Unary("InstanceNorm2d", (ev, m, x) => InstanceNorm(ev, m, x, 2)),
        [("torch.nn", "InstanceNorm3d")] = Unary("InstanceNorm3d", (ev, m, x) => InstanceNorm(ev, m, x, 3)),
        [("torch.nn", "Softmax")] = Unary("Softmax", (ev, m, x) => ReduceKernels.Softmax(x, Arg(m, "dim", null) is long d ? d : null, ev.Pass)),
        [("torch.nn", "LayerNorm")] = Unary("LayerNorm", (ev, m, x) => NormKernels.LayerNorm(x, Ints(m, "normalized_shape"),
            m.State.TryGet("weight"), m.State.TryGet("bias"), Number(m, "eps"), ev.Pass)),
        [("torch.nn.modules.linear", "NonDynamicallyQuantizableLinear")] = Unary("NonDynamicallyQuantizableLinear", (ev, m, x) => Attention.Linear(ev, m, x)),
        [("torch.nn", "MultiheadAttention")] = Entry("MultiheadAttention",
            [P("query"), P("key"), P("value"), Opt("key_padding_mask"), Opt("need_weights", true), Opt("attn_mask"), Opt("average_attn_weights", true)],
            Attention.MultiheadAttention),
    }.Concat(DropoutTypes.Select(t => KeyValuePair.Create(("torch.nn", t), Unary(t, Dropout))))
     .ToFrozenDictionary();

    /// <summary>Whether the engine computes <paramref name="m"/>.</summary>
    public static bool Computes(OpaqueModule m) => Table.ContainsKey((m.Namespace, m.TypeName));

    /// <summary>
    /// <paramref name="m"/> called by graph node <paramref name="node"/>, whose arguments <paramref name="resolve"/>
    /// evaluates; the result may be a tensor or a tuple (<c>MultiheadAttention</c> returns the output and the weights).
    /// </summary>
    /// <exception cref="EngineInputException">The module has no evaluator here (unsupported), or the call does not fit it.</exception>
    public static object? Call(Evaluator ev, OpaqueModule m, GraphNode node, Func<GraphArg, object?> resolve)
    {
        if (!Table.TryGetValue((m.Namespace, m.TypeName), out var carried))
            throw new EngineInputException($"{m.Namespace}.{m.TypeName} is carried as an opaque module, which the engine does not evaluate", unsupported: true);
        try { return carried.Run(ev, m, carried.Signature.Bind(node, resolve, GraphInterpreter.Describe)); }
        catch (GraphCallException e) { throw new EngineInputException(e.Message); }
    }

    /// <summary><paramref name="m"/> on one tensor, as a Sequential or a fused group calls its children.</summary>
    public static Tensor Call(Evaluator ev, OpaqueModule m, Tensor x)
    {
        var node = new GraphNode(NodeOp.CallModule, "input", m.TypeName, [GraphArg.Ref("input")]);
        return Call(ev, m, node, _ => x) as Tensor
               ?? throw new EngineInputException($"{m.Namespace}.{m.TypeName} returns more than a tensor; call it from a graph that unpacks its result");
    }

    /// <summary>nn.Upsample and its two fixed-mode subclasses: <c>F.interpolate</c> with the recorded size,
    /// scale_factor, mode, align_corners and recompute_scale_factor.</summary>
    private static Tensor Upsample(Evaluator ev, OpaqueModule m, Tensor x) => UpsampleOf(m).Forward(x, ev.Pass);

    /// <summary>The interpolation an nn.Upsample (or UpsamplingNearest2d/UpsamplingBilinear2d) records.</summary>
    /// <exception cref="EngineInputException">Recorded arguments <c>F.interpolate</c> refuses, or a mode not supported here.</exception>
    private static Interpolation UpsampleOf(OpaqueModule m)
    {
        try { return Interpolation.FromModule(m); }
        catch (ArgumentException e) { throw new EngineInputException(e.Message, unsupported: e.Message.Contains("not supported", StringComparison.Ordinal)); }
    }

    /// <summary>Dropout of every kind: the identity in eval mode (or with p = 0); random in training, so refused.</summary>
    private static Tensor Dropout(Evaluator ev, OpaqueModule m, Tensor x)
    {
        var p = Number(m, "p");
        if (!m.Training || p == 0) return x;
        throw new EngineInputException($"{m.TypeName}(p={p}) in training mode has a random result in PyTorch; put the model in eval mode to evaluate it", unsupported: true);
    }

    /// <summary>InstanceNorm1d/2d/3d on a batched input, with each instance's own statistics (one group per channel);
    /// running statistics in eval mode and unbatched inputs are refused as unsupported.</summary>
    private static Tensor InstanceNorm(Evaluator ev, OpaqueModule m, Tensor x, int rank)
    {
        if (Flag(m, "track_running_stats", false))
            throw new EngineInputException($"{m.TypeName} with track_running_stats=True normalises by its running statistics in eval mode, which the engine does not compute", unsupported: true);
        if (x.Rank != rank + 2)
            throw new EngineInputException($"{m.TypeName} takes a batched input of rank {rank + 2}, got {Tensor.ShapeString(x.Shape)}", unsupported: x.Rank == rank + 1);
        return NormKernels.GroupNorm(x, x.Shape[1], m.State.TryGet("weight"), m.State.TryGet("bias"), Number(m, "eps"), ev.Pass);
    }

    /// <summary>A recorded attribute, or <paramref name="fallback"/> when the exporter did not record it.</summary>
    public static object? Arg(OpaqueModule m, string name, object? fallback) => m.Argument(name, fallback);

    /// <summary>A recorded number attribute (<see cref="OpaqueModule.NumberArgument"/>).</summary>
    /// <exception cref="EngineInputException">It is missing or not a number.</exception>
    public static double Number(OpaqueModule m, string name) => Read(() => m.NumberArgument(name));

    /// <summary>A recorded non-negative integer attribute (<see cref="OpaqueModule.CountArgument"/>).</summary>
    /// <exception cref="EngineInputException">It is missing or something else.</exception>
    public static int Int(OpaqueModule m, string name) => Read(() => m.CountArgument(name));

    /// <summary>A recorded attribute that is one integer or a list of them (<see cref="OpaqueModule.SizesArgument"/>).</summary>
    /// <exception cref="EngineInputException">It is something else.</exception>
    public static int[] Ints(OpaqueModule m, string name) => Read(() => m.SizesArgument(name));

    /// <summary>A recorded True/False attribute (<see cref="OpaqueModule.FlagArgument"/>).</summary>
    /// <exception cref="EngineInputException">It is something else.</exception>
    public static bool Flag(OpaqueModule m, string name, bool fallback) => Read(() => m.FlagArgument(name, fallback));

    private static T Read<T>(Func<T> read)
    {
        try { return read(); }
        catch (ArgumentException e) { throw new EngineInputException(e.Message); }
    }
}
