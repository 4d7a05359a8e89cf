using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Runs a user container's torch.fx-style graph: every node in order (as torch.fx's generated code does, including
/// nodes whose value is unused), module calls through <see cref="Evaluator.Call(Algebra.Module, Tensors.Tensor, string)"/> at their dotted path, and the free
/// functions and tensor methods with PyTorch's argument conventions (positional or keyword, torch's defaults).
/// In-place activations are honoured within the graph (values sharing the overwritten tensor read the result); a
/// container module that overwrites its own input inside (a Sequential starting with <c>ReLU(inplace=True)</c>) is not
/// seen from the calling graph, since tensors are immutable values.
/// </summary>
internal static class GraphInterpreter
{
    public static Tensor Run(Evaluator ev, UserModule owner, Graph graph, Tensor input, string path)
    {
        var values = new Dictionary<string, object?>(StringComparer.Ordinal);
        // Remaining reads of each node's value; when the last one has run, the value is dead and lets go of its storage.
        var uses = new Dictionary<string, int>(StringComparer.Ordinal);
        var storage = ev.Pass.Recycling ? new StorageOwners(ev.Pass, input) : null;
        if (storage is not null)
            foreach (var node in graph.Nodes)
                foreach (var r in node.Inputs)
                    uses[r] = uses.GetValueOrDefault(r) + 1;
        var inputs = 0;
        foreach (var node in graph.Nodes)
        {
            object? value = null;
            Tensor? mutated = null;
            switch (node.Op)
            {
                case NodeOp.Placeholder:
                    if (inputs++ > 0)
                        throw new EngineInputException($"graph node '{node.Name}': the graph takes more than one input, but a forward pass passes one tensor");
                    value = input;
                    break;
                case NodeOp.GetAttr:
                    value = Attribute(owner, node);
                    break;
                case NodeOp.CallModule:
                {
                    var module = ModulePath.Get(owner, node.Target!);
                    if (module is FusedModule { InputCount: 2 } twoInputs)
                    {
                        value = ev.Call(twoInputs, ResidualInputs(node, values, out var residual), residual, ModulePath.Join(path, node.Target!));
                        break;
                    }
                    if (module is OpaqueModule o && !IsOneTensorCall(node, values))
                    {
                        value = CallCarried(ev, o, node, values);
                        break;
                    }
                    var x = ModuleInput(node, values);
                    value = ev.Call(module, x, ModulePath.Join(path, node.Target!));
                    if (module is Activation { Inplace: true } or Dropout { Inplace: true }) mutated = x;
                    break;
                }
                case NodeOp.CallFunction:
                case NodeOp.CallMethod:
                {
                    var call = Bind(node, values);
                    value = Call(ev, call);
                    if (call.Op.IsInplace(node)) mutated = call.Get<Tensor>(call.Op.Parameters[0].Name, "a tensor");
                    break;
                }
                case NodeOp.Output:
                {
                    if (node.Args.Length != 1)
                        throw new EngineInputException($"graph output '{node.Name}' returns {node.Args.Length} values; a forward pass returns one tensor");
                    return Resolve(node.Args[0], values) as Tensor
                           ?? throw new EngineInputException($"graph output '{node.Name}' is not a tensor (got {Describe(Resolve(node.Args[0], values))}); a forward pass returns one tensor");
                }
            }
            values[node.Name] = value;
            storage?.Hold(node.Name, value);
            if (mutated is not null && value is Tensor result) Rebind(values, mutated, result, node.Name, storage);
            if (storage is null) continue;
            if (uses.GetValueOrDefault(node.Name) == 0) storage.Let(node.Name);
            foreach (var r in node.Inputs)
                if (--uses[r] == 0) storage.Let(r);
        }
        throw new EngineInputException("the graph has no output node");
    }

    /// <summary>
    /// PyTorch's in-place operations (<c>ReLU(inplace=True)</c>, <c>F.relu(x, inplace=True)</c>) overwrite their input, so
    /// every value sharing its storage (the input node and its views) reads the result afterwards. Tensors here are
    /// immutable, so those values are rebound to the result instead (viewed in each value's own shape). The graph's
    /// own input is rebound too; the caller's tensor is not changed.
    /// </summary>
    private static void Rebind(Dictionary<string, object?> values, Tensor mutated, Tensor result, string producer, StorageOwners? storage)
    {
        if (mutated.DType != DType.Float32 || ReferenceEquals(mutated.RawFloat32, result.RawFloat32) || mutated.Count != result.Count) return;
        var old = mutated.RawFloat32;
        foreach (var name in values.Keys.ToArray())
        {
            if (name == producer || values[name] is not Tensor t || t.DType != DType.Float32 || !ReferenceEquals(t.RawFloat32, old)) continue;
            var rebound = result.Reshape(t.Dimensions.ToArray());
            values[name] = rebound;
            storage?.Rebind(name, rebound);
        }
    }

    /// <summary>
    /// Which live values hold which storage, so that an array goes back to the pass's <see cref="BufferPool"/> exactly when the last
    /// live value holding it dies. A tuple or list (chunk's pieces, attention's output and weights) holds each tensor in it. Values share storage through views (reshape, flatten, an Identity, a fused group's
    /// Identity members) and through in-place rebinding; a value holds its storage from when it is produced until its
    /// last read, once, so rebinding a value that already died holds nothing (counting it again once returned a storage
    /// that a live view still read: the fused ResNet defect).
    /// </summary>
    private sealed class StorageOwners(Pass pass, Tensor input)
    {
        private readonly Dictionary<string, Tensor[]> _held = new(StringComparer.Ordinal);
        private readonly Dictionary<float[], int> _holders = new(ReferenceEqualityComparer.Instance);

        /// <summary><paramref name="name"/>'s value is live: the tensors in it hold their storage.</summary>
        public void Hold(string name, object? value)
        {
            Tensor[] tensors = value switch
            {
                Tensor t => [t],
                IReadOnlyList<object?> list => [.. list.OfType<Tensor>()],
                _ => [],
            };
            tensors = [.. tensors.Where(t => t.DType == DType.Float32)];
            if (tensors.Length == 0) return;
            _held[name] = tensors;
            foreach (var t in tensors) _holders[t.RawFloat32] = _holders.GetValueOrDefault(t.RawFloat32) + 1;
        }

        /// <summary><paramref name="name"/>'s value died: it lets go of its storage, which is recycled when no other live value holds it.</summary>
        public void Let(string name)
        {
            if (!_held.Remove(name, out var tensors)) return;
            foreach (var t in tensors)
            {
                var array = t.RawFloat32;
                if (--_holders[array] > 0) continue;
                _holders.Remove(array);
                pass.Release(t, input);
            }
        }

        /// <summary>A live <paramref name="name"/> now reads <paramref name="t"/>: it moves its hold there. A dead one holds nothing.</summary>
        public void Rebind(string name, Tensor t)
        {
            if (!_held.ContainsKey(name)) return;
            Let(name);
            Hold(name, t);
        }
    }

    // UserModule checks every get_attr when it is created, so a miss here means a graph and container that disagree.
    private static Tensor Attribute(UserModule owner, GraphNode node)
        => owner.Attribute(node.Target!)
           ?? throw new EngineInputException($"graph node '{node.Name}' reads attribute '{node.Target}', which is not a parameter or buffer of a module of {owner.TypeName}");

    /// <summary>Whether a module call passes exactly one tensor (by position or keyword), as a layer is called.</summary>
    private static bool IsOneTensorCall(GraphNode node, Dictionary<string, object?> values)
        => node.Args.Length + node.Kwargs.Length == 1 && Resolve(node.Args.Length == 1 ? node.Args[0] : node.Kwargs[0].Value, values) is Tensor;

    /// <summary>
    /// A carried library module called with several arguments (<c>self_attention(x, x, x, need_weights=False)</c>):
    /// bound to its forward's parameters. Hooks take one tensor, so a hooked module is not called this way.
    /// </summary>
    private static object? CallCarried(Evaluator ev, OpaqueModule o, GraphNode node, Dictionary<string, object?> values)
    {
        if (o.PreHooks.Length != 0 || o.Hooks.Length != 0)
            throw new EngineInputException($"graph node '{node.Name}' calls {node.Target} with several arguments, but it has hooks, which take one tensor", unsupported: true);
        try { return CarriedModules.Call(ev, o, node, a => Resolve(a, values)); }
        catch (EngineInputException e) { throw new EngineInputException($"graph node '{node.Name}' calls {node.Target}: {e.Message}", e.Unsupported); }
    }

    /// <summary>The one tensor a module call passes (a layer is called with its input alone).</summary>
    /// <summary>The input and the residual of a two-input fused module's call, passed positionally.</summary>
    private static Tensor ResidualInputs(GraphNode node, Dictionary<string, object?> values, out object? residual)
    {
        if (node.Args.Length != 2 || node.Kwargs.Length != 0)
            throw new EngineInputException($"graph node '{node.Name}': module {node.Target} takes the input and the residual as two positional arguments, got {node.Args.Length} positional and {node.Kwargs.Length} keyword arguments");
        residual = Resolve(node.Args[1], values);
        return Resolve(node.Args[0], values) as Tensor
               ?? throw new EngineInputException($"graph node '{node.Name}': module {node.Target} must be called with a tensor, got {Describe(Resolve(node.Args[0], values))}");
    }

    private static Tensor ModuleInput(GraphNode node, Dictionary<string, object?> values)
    {
        if (node.Args.Length + node.Kwargs.Length != 1)
            throw new EngineInputException($"graph node '{node.Name}': module {node.Target} is called with {node.Args.Length} positional and {node.Kwargs.Length} keyword arguments; the engine calls a module with one tensor");
        var arg = node.Args.Length == 1 ? node.Args[0] : node.Kwargs[0].Value;
        return Resolve(arg, values) as Tensor
               ?? throw new EngineInputException($"graph node '{node.Name}': module {node.Target} must be called with a tensor, got {Describe(Resolve(arg, values))}");
    }

    /// <summary>The node's call matched to its operation in <see cref="GraphOps"/>; an operation outside the table is
    /// carried by the model but has no meaning here.</summary>
    private static OpCall Bind(GraphNode node, Dictionary<string, object?> values)
    {
        var op = GraphOps.Of(node)
                 ?? throw new EngineInputException($"graph node '{node.Name}' calls {(node.Op == NodeOp.CallMethod ? "the tensor method ." + node.Target + "()" : "the function " + node.Target)}, which the engine does not evaluate (the model carries it as an opaque operation)", unsupported: true);
        try { return op.Bind(node, a => Resolve(a, values), Describe); }
        catch (GraphCallException e) { throw new EngineInputException(e.Message); }
    }

    /// <summary>Evaluates a bound call. Argument errors name the node (<see cref="GraphCallException"/>).</summary>
    private static object? Call(Evaluator ev, OpCall a)
    {
        try { return Evaluate(ev, a); }
        catch (GraphCallException e) { throw new EngineInputException(e.Message); }
    }

    private static object? Evaluate(Evaluator ev, OpCall a)
    {
        var t = ev.Pass;
        var node = a.Node;
        var self = a.Op.Parameters[0].Name;
        Tensor X() => a.Get<Tensor>(self, "a tensor");
        Tensor T(string name) => a.Get<Tensor>(name, "a tensor");
        switch (a.Op.Name)
        {
            case "add":
                return BinaryOp(node, TensorOps.Binary.Add, a.Value(self), a.Value("other"), t);
            case "mul":
                return BinaryOp(node, TensorOps.Binary.Mul, a.Value(self), a.Value("other"), t);
            case "sub":
                return BinaryOp(node, TensorOps.Binary.Sub, a.Value(self), a.Value("other"), t);
            case "div":
                if (a.Value("rounding_mode") is not null)
                    throw Unsupported(node, $"div with rounding_mode={a.Value("rounding_mode")}");
                return BinaryOp(node, TensorOps.Binary.Div, a.Value(self), a.Value("other"), t);
            case "floordiv":
                return PyValues.FloorDiv(a.Value(self), a.Value("other")) ?? throw Unsupported(node, $"floordiv of {Describe(a.Value(self))} and {Describe(a.Value("other"))}");
            case "eq":
                return PyValues.Eq(a.Value(self), a.Value("other")) ?? throw Unsupported(node, $"eq of {Describe(a.Value(self))} and {Describe(a.Value("other"))}");
            case "matmul":
                return MatMulKernels.MatMul(X(), T("other"), t);
            case "bmm":
                return MatMulKernels.Bmm(X(), T("mat2"), t);
            case "relu":
                return TensorOps.Activation(X(), Act.ReLU, t);
            case "relu6":
                return TensorOps.Activation(X(), Act.ReLU6, t);
            case "hardsigmoid":
                return TensorOps.Activation(X(), Act.Hardsigmoid, t);
            case "sigmoid":
                return TensorOps.Activation(X(), Act.Sigmoid, t);
            case "hardtanh":
                return PointwiseKernels.Hardtanh(X(), a.Double("min_val"), a.Double("max_val"), t);
            case "gelu":
                return PointwiseKernels.Gelu(X(), PointwiseKernels.GeluOf(a.Value("approximate") as string), t);
            case "softmax":
                if (a.Value("dtype") is not null) throw Unsupported(node, "softmax with a dtype");
                return ReduceKernels.Softmax(X(), a.OptionalLong("dim"), t);
            case "layer_norm":
                return NormKernels.LayerNorm(X(), a.IntList("normalized_shape"), OptionalTensor(a, "weight"), OptionalTensor(a, "bias"), a.Double("eps"), t);
            case "dropout":
                return !a.Flag("training") || a.Double("p") == 0 ? X() : throw Unsupported(node, "dropout in training mode (its result is random)");
            case "stochastic_depth":
                return !a.Flag("training") || a.Double("p") == 0 ? X() : throw Unsupported(node, "stochastic_depth in training mode (its result is random)");
            case "flatten":
                return TensorOps.Flatten(X(), a.Long("start_dim"), a.Long("end_dim"));
            case "cat":
            {
                var list = a.Get<IReadOnlyList<object?>>("tensors", "a list of tensors");
                var parts = list.Select(v => v as Tensor ?? throw a.Error("tensors", "a list of tensors")).ToArray();
                return TensorOps.Cat(parts, a.Long("dim"), t);
            }
            case "interpolate":
            {
                Interpolation spec;
                try { spec = Interpolation.FromArguments(a.Value("size"), a.Value("scale_factor"), a.Value("mode"), a.Value("align_corners"), a.Value("recompute_scale_factor"), a.Value("antialias")); }
                catch (ArgumentException e) { throw Unsupported(node, e.Message); }
                return spec.Forward(X(), t);
            }
            case "adaptive_avg_pool2d":
            {
                var (h, w) = a.SizePair("output_size");
                return PoolKernels.Planes(X(), x => PoolKernels.AdaptiveAvgPool(x, h, w, t));
            }
            case "avg_pool2d":
            {
                if (a.Value("divisor_override") is not null) throw Unsupported(node, "avg_pool2d with divisor_override");
                var kernel = a.IntList("kernel_size");
                var pool = AvgPool2d.Create(kernel, a.IntListOr("stride", kernel), a.IntList("padding"), a.Flag("ceil_mode"), a.Flag("count_include_pad"));
                return PoolKernels.Planes(X(), x => PoolKernels.AvgPool(pool, x, t));
            }
            case "max_pool2d":
            {
                if (a.Flag("return_indices")) throw Unsupported(node, "max_pool2d with return_indices=True");
                var kernel = a.IntList("kernel_size");
                var pool = MaxPool2d.Create(kernel, a.IntListOr("stride", kernel), a.IntList("padding"), a.IntList("dilation"), a.Flag("ceil_mode"));
                return PoolKernels.Planes(X(), x => PoolKernels.MaxPool(pool, x, t));
            }
            case "mean":
                if (a.Value("dtype") is not null) throw Unsupported(node, "mean with a dtype");
                return ReduceKernels.Mean(X(), a.Value("dim") is null ? null : a.IntList("dim"), a.Flag("keepdim"));
            case "reshape":
            case "view":
                return TensorOps.Reshape(X(), a.IntList("shape"));
            case "contiguous":
                return X();
            case "squeeze":
                return TensorOps.Squeeze(X(), a.OptionalLong("dim"));
            case "unsqueeze":
                return TensorOps.Unsqueeze(X(), a.Long("dim"));
            case "permute":
                return ShapeKernels.Permute(X(), a.IntList("dims"));
            case "transpose":
                return ShapeKernels.Transpose(X(), a.Long("dim0"), a.Long("dim1"));
            case "swapaxes":
                return ShapeKernels.Transpose(X(), a.Long("axis0"), a.Long("axis1"));
            case "einsum":
            {
                var operands = a.Value("operands") switch
                {
                    Tensor one => [one],
                    IReadOnlyList<object?> list => list.Select(v => v as Tensor ?? throw a.Error("operands", "tensors")).ToArray(),
                    _ => throw a.Error("operands", "tensors"),
                };
                return Einsum.Run(a.Get<string>("equation", "an equation"), operands, t);
            }
            case "expand":
                return ShapeKernels.Expand(X(), a.IntList("size"));
            case "chunk":
                return Tuple(ShapeKernels.Chunk(X(), a.Long("chunks"), a.Long("dim")));
            case "split":
            {
                var sizes = a.Op.Parameters[1].Name;
                return Tuple(a.Value(sizes) is long size ? ShapeKernels.Split(X(), size, a.Long("dim")) : ShapeKernels.Sections(X(), a.IntList(sizes), a.Long("dim")));
            }
            case "shifted_window_attention":
                if (a.Double("attention_dropout") != 0 || a.Double("dropout") != 0)
                    throw Unsupported(node, "shifted_window_attention with dropout (F.dropout there defaults to training, so its result is random)");
                return WindowAttention.ShiftedWindowAttention(ev, new WindowAttention.Call(X(), T("qkv_weight"), T("proj_weight"), T("relative_position_bias"),
                    a.IntList("window_size"), (int)a.Long("num_heads"), a.IntList("shift_size"), OptionalTensor(a, "qkv_bias"), OptionalTensor(a, "proj_bias"),
                    OptionalTensor(a, "logit_scale")));
            case "relative_position_bias":
                return WindowAttention.RelativePositionBias(T("relative_position_bias_table"), T("relative_position_index"), a.IntList("window_size"));
            case "patch_merging_pad":
                return WindowAttention.PatchMergingPad(X());
            case "getitem":
                return a.Value(self) is Tensor indexed ? ShapeKernels.Index(indexed, a.Value("b")) : PyValues.GetItem(a.Value(self), a.Value("b"));
            case "tensor":
                try { return TensorLiteral.Read(a.Value("data"), a.DTypeName("dtype")); }
                catch (NotSupportedException e) { throw Unsupported(node, e.Message); }
                catch (ArgumentException e) { throw new EngineInputException($"graph node '{node.Name}': {e.Message}"); }
            case "getattr":
                return PyValues.Attribute(a.Value(self), a.Value("name")) ?? throw Unsupported(node, $"getattr of {Describe(a.Value("name"))} on {Describe(a.Value(self))}");
            case "_assert":
                return PyValues.Truth(a.Value("condition")) switch
                {
                    true => null,
                    false => throw new EngineInputException($"graph node '{node.Name}': the model's assertion failed: {a.Value("message")}"),
                    null => throw Unsupported(node, $"_assert on {Describe(a.Value("condition"))}"),
                };
            case "size":
                return a.OptionalLong("dim") is { } dim ? (long)X().Size(TensorOps.Dim(dim, X().Rank, "size")) : PyValues.Shape(X());
            case "dim":
                return (long)X().Rank;
            default:
                throw new EngineInputException($"graph node '{node.Name}': the engine has no kernel for {a.Op}");
        }
    }

    /// <summary>A refusal of an operation in the table called in a way the engine does not compute (the model is valid).</summary>
    private static EngineInputException Unsupported(GraphNode node, string what)
        => new($"graph node '{node.Name}': the engine does not evaluate {what}", unsupported: true);

    private static Tensor? OptionalTensor(OpCall a, string name) => a.Value(name) is null ? null : a.Get<Tensor>(name, "a tensor or None");

    private static object?[] Tuple(Tensor[] parts) => [.. parts];

    private static object BinaryOp(GraphNode node, TensorOps.Binary op, object? a, object? b, Pass pass) => (a, b) switch
    {
        (Tensor x, Tensor y) => TensorOps.Apply(op, x, y, pass),
        (Tensor x, long or double) => TensorOps.Apply(op, x, PyValues.Number(b), pass),
        (long or double, Tensor y) => TensorOps.Apply(op, y, PyValues.Number(a), pass, scalarFirst: true),
        (long or double, long or double) => PyValues.Arithmetic(op, a, b),
        _ => throw new EngineInputException($"graph node '{node.Name}': {node.Target} of {Describe(a)} and {Describe(b)} is not supported"),
    };

    internal static object? Resolve(GraphArg arg, Dictionary<string, object?> values) => arg switch
    {
        RefArg r => values[r.Node],
        ConstArg c => c.Value,
        ListArg l => l.Items.Select(i => Resolve(i, values)).ToArray(),
        _ => throw new EngineInputException($"unknown graph argument {arg}"),
    };

    internal static string Describe(object? v) => v switch
    {
        null => "None",
        Tensor t => $"a tensor {Tensor.ShapeString(t.Shape)}",
        string str => $"'{str}'",
        IReadOnlyList<object?> l => $"a list of {l.Count}",
        _ => $"{v.GetType().Name} {v}",
    };
}
