using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Runs a user container's torch.fx-style graph: every node in order (as torch.fx's generated code does, including
/// nodes whose value is unused), module calls through <see cref="Evaluator.Call"/> at their dotted path, and the free
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
                    if (module is OpaqueModule o)
                        throw new EngineInputException($"graph node '{node.Name}' calls {node.Target}, a {o.Namespace}.{o.TypeName} carried as an opaque module, which the engine does not evaluate", unsupported: true);
                    var x = ModuleInput(node, values);
                    value = ev.Call(module, x, Evaluator.Join(path, node.Target!));
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
            if (value is Tensor produced) storage?.Hold(node.Name, produced);
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
    /// live value holding it dies. Values share storage through views (reshape, flatten, an Identity, a fused group's
    /// Identity members) and through in-place rebinding; a value holds its storage from when it is produced until its
    /// last read, once, so rebinding a value that already died holds nothing (counting it again once returned a storage
    /// that a live view still read: the fused ResNet defect).
    /// </summary>
    private sealed class StorageOwners(Pass pass, Tensor input)
    {
        private readonly Dictionary<string, Tensor> _held = new(StringComparer.Ordinal);
        private readonly Dictionary<float[], int> _holders = new(ReferenceEqualityComparer.Instance);

        /// <summary><paramref name="name"/>'s value <paramref name="t"/> is live: it holds its storage.</summary>
        public void Hold(string name, Tensor t)
        {
            if (t.DType != DType.Float32) return;
            _held[name] = t;
            _holders[t.RawFloat32] = _holders.GetValueOrDefault(t.RawFloat32) + 1;
        }

        /// <summary><paramref name="name"/>'s value died: it lets go of its storage, which is recycled when no other live value holds it.</summary>
        public void Let(string name)
        {
            if (!_held.Remove(name, out var t)) return;
            var array = t.RawFloat32;
            if (--_holders[array] > 0) return;
            _holders.Remove(array);
            pass.Release(t, input);
        }

        /// <summary>A live <paramref name="name"/> now reads <paramref name="t"/>: it moves its hold there. A dead one holds nothing.</summary>
        public void Rebind(string name, Tensor t)
        {
            if (!_held.ContainsKey(name)) return;
            Let(name);
            Hold(name, t);
        }
    }

    private static Tensor Attribute(UserModule owner, GraphNode node)
    {
        var target = node.Target!;
        var dot = target.LastIndexOf('.');
        if (!ModulePath.TryGet(owner, dot < 0 ? "" : target[..dot], out var module))
            throw new EngineInputException($"graph node '{node.Name}' reads attribute '{target}' of a module that does not exist");
        var name = dot < 0 ? target : target[(dot + 1)..];
        return module.State.TryGet(name)
               ?? throw new EngineInputException($"graph node '{node.Name}' reads attribute '{target}', which is not a parameter or buffer (entries there: {string.Join(", ", module.State.Names)})");
    }

    /// <summary>The one tensor a module call passes (a layer is called with its input alone).</summary>
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
        switch (a.Op.Name)
        {
            case "add":
            case "mul":
                return BinaryOp(node, a.Op.Name == "add" ? TensorOps.Binary.Add : TensorOps.Binary.Mul, a.Value(self), a.Value("other"), t);
            case "relu":
                return TensorOps.Activation(X(), Act.ReLU, t);
            case "hardsigmoid":
                return TensorOps.Activation(X(), Act.Hardsigmoid, t);
            case "flatten":
                return TensorOps.Flatten(X(), a.Long("start_dim"), a.Long("end_dim"));
            case "cat":
            {
                var list = a.Get<IReadOnlyList<object?>>("tensors", "a list of tensors");
                var parts = list.Select(v => v as Tensor ?? throw a.Error("tensors", "a list of tensors")).ToArray();
                return TensorOps.Cat(parts, a.Long("dim"), t);
            }
            case "adaptive_avg_pool2d":
            {
                var x = X();
                var (h, w) = a.SizePair("output_size");
                if (x.Rank is not (3 or 4))
                    throw new EngineInputException($"graph node '{node.Name}': adaptive_avg_pool2d expects [N, C, H, W] or [C, H, W], got {Tensor.ShapeString(x.Shape)}");
                if (x.Rank == 4) return PoolKernels.AdaptiveAvgPool(x, h, w, t);
                var y = PoolKernels.AdaptiveAvgPool(x.Reshape([1, .. x.Shape]), h, w, t);
                return y.Reshape(y.Shape[1..].ToArray());
            }
            case "reshape":
            case "view":
                return TensorOps.Reshape(X(), a.IntList("shape"));
            case "contiguous":
                return X();
            case "squeeze":
                return TensorOps.Squeeze(X(), a.OptionalLong("dim"));
            case "unsqueeze":
                return TensorOps.Unsqueeze(X(), a.Long("dim"));
            default:
                throw new EngineInputException($"graph node '{node.Name}': the engine has no kernel for {a.Op}");
        }
    }

    private static object BinaryOp(GraphNode node, TensorOps.Binary op, object? a, object? b, Pass pass) => (a, b) switch
    {
        (Tensor x, Tensor y) => TensorOps.Apply(op, x, y, pass),
        (Tensor x, long or double) => TensorOps.Apply(op, x, Convert.ToDouble(b, System.Globalization.CultureInfo.InvariantCulture), pass),
        (long or double, Tensor y) => TensorOps.Apply(op, y, Convert.ToDouble(a, System.Globalization.CultureInfo.InvariantCulture), pass),
        (long x, long y) => op == TensorOps.Binary.Add ? x + y : x * y,
        (long or double, long or double) => op == TensorOps.Binary.Add
            ? Convert.ToDouble(a, System.Globalization.CultureInfo.InvariantCulture) + Convert.ToDouble(b, System.Globalization.CultureInfo.InvariantCulture)
            : Convert.ToDouble(a, System.Globalization.CultureInfo.InvariantCulture) * Convert.ToDouble(b, System.Globalization.CultureInfo.InvariantCulture),
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
        IReadOnlyList<object?> l => $"a list of {l.Count}",
        _ => $"{v.GetType().Name} {v}",
    };
}
