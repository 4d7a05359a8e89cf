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
        var storage = Buffers.Recycling ? new StorageOwners(input) : null;
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
                    var args = new Args(node, values, ["input"]);
                    args.Expect(1);
                    var x = args.Tensor(0, "input");
                    var module = ModulePath.Get(owner, node.Target!);
                    value = ev.Call(module, x, Evaluator.Join(path, node.Target!));
                    if (module is Activation { Inplace: true } or Dropout { Inplace: true }) mutated = x;
                    break;
                }
                case NodeOp.CallFunction:
                    value = Function(ev, node, values);
                    if (node.Target is "relu" or "hardsigmoid")
                    {
                        var fa = new Args(node, values, ["input", "inplace"]);
                        if (fa.Flag(1, "inplace")) mutated = fa.Tensor(0, "input");
                    }
                    break;
                case NodeOp.CallMethod:
                    value = Method(ev, node, values);
                    break;
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
    /// Which live values hold which storage, so that an array goes back to <see cref="Buffers"/> exactly when the last
    /// live value holding it dies. Values share storage through views (reshape, flatten, an Identity, a fused group's
    /// Identity members) and through in-place rebinding; a value holds its storage from when it is produced until its
    /// last read, once, so rebinding a value that already died holds nothing (counting it again once returned a storage
    /// that a live view still read: the fused ResNet defect).
    /// </summary>
    private sealed class StorageOwners(Tensor input)
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
            Buffers.Release(t, input);
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

    private static object? Function(Evaluator ev, GraphNode node, Dictionary<string, object?> values)
    {
        var t = ev.Threads;
        switch (node.Target)
        {
            case "add":
            case "mul":
            {
                var a = new Args(node, values, ["input", "other"]);
                a.Expect(2);
                return BinaryOp(node, node.Target == "add" ? TensorOps.Binary.Add : TensorOps.Binary.Mul, a.Value(0, "input"), a.Value(1, "other"), t);
            }
            case "relu":
            case "hardsigmoid":
            {
                var a = new Args(node, values, ["input", "inplace"]);
                a.Expect(1, 2);
                return TensorOps.Activation(a.Tensor(0, "input"), node.Target == "relu" ? Act.ReLU : Act.Hardsigmoid, t);
            }
            case "flatten":
            {
                var a = new Args(node, values, ["input", "start_dim", "end_dim"]);
                a.Expect(1, 3);
                return TensorOps.Flatten(a.Tensor(0, "input"), a.Long(1, "start_dim", 0), a.Long(2, "end_dim", -1));
            }
            case "cat":
            {
                var a = new Args(node, values, ["tensors", "dim"]);
                a.Expect(1, 2);
                var list = a.Value(0, "tensors") as IReadOnlyList<object?>
                           ?? throw a.Error("tensors", "a list of tensors");
                var parts = list.Select(v => v as Tensor ?? throw a.Error("tensors", "a list of tensors")).ToArray();
                return TensorOps.Cat(parts, a.Long(1, "dim", 0));
            }
            case "adaptive_avg_pool2d":
            {
                var a = new Args(node, values, ["input", "output_size"]);
                a.Expect(2);
                var x = a.Tensor(0, "input");
                var (h, w) = a.SizePair(1, "output_size");
                if (x.Rank is not (3 or 4))
                    throw new EngineInputException($"graph node '{node.Name}': adaptive_avg_pool2d expects [N, C, H, W] or [C, H, W], got {Tensor.ShapeString(x.Shape)}");
                if (x.Rank == 4) return PoolKernels.AdaptiveAvgPool(x, h, w, t);
                var y = PoolKernels.AdaptiveAvgPool(x.Reshape([1, .. x.Shape]), h, w, t);
                return y.Reshape(y.Shape[1..].ToArray());
            }
            case "reshape":
            {
                var a = new Args(node, values, ["input", "shape"]);
                a.Expect(2);
                return TensorOps.Reshape(a.Tensor(0, "input"), a.IntList(1, "shape"));
            }
            default:
                throw new EngineInputException($"graph node '{node.Name}' calls function '{node.Target}', which the engine does not evaluate");
        }
    }

    private static object? Method(Evaluator ev, GraphNode node, Dictionary<string, object?> values)
    {
        switch (node.Target)
        {
            case "contiguous":
            {
                var a = new Args(node, values, ["self", "memory_format"]);
                a.Expect(1, 2);
                return a.Tensor(0, "self");
            }
            case "squeeze":
            {
                var a = new Args(node, values, ["self", "dim"]);
                a.Expect(1, 2);
                return TensorOps.Squeeze(a.Tensor(0, "self"), a.OptionalLong(1, "dim"));
            }
            case "unsqueeze":
            {
                var a = new Args(node, values, ["self", "dim"]);
                a.Expect(2);
                return TensorOps.Unsqueeze(a.Tensor(0, "self"), a.Long(1, "dim", 0));
            }
            case "reshape":
            case "view":
            {
                // x.reshape(2, -1) and x.reshape((2, -1)) are the same call.
                var a = new Args(node, values, ["self", "shape"]);
                var x = a.Tensor(0, "self");
                int[] shape;
                if (a.Positional == 2 && a.Value(1, "shape") is IReadOnlyList<object?>) shape = a.IntList(1, "shape");
                else if (a.Positional == 1) shape = a.IntList(1, "shape");
                else shape = [.. Enumerable.Range(1, a.Positional - 1).Select(i => checked((int)a.Long(i, "shape", 0)))];
                return TensorOps.Reshape(x, shape);
            }
            case "flatten":
            {
                var a = new Args(node, values, ["self", "start_dim", "end_dim"]);
                a.Expect(1, 3);
                return TensorOps.Flatten(a.Tensor(0, "self"), a.Long(1, "start_dim", 0), a.Long(2, "end_dim", -1));
            }
            case "add":
            case "mul":
            {
                var a = new Args(node, values, ["self", "other"]);
                a.Expect(2);
                return BinaryOp(node, node.Target == "add" ? TensorOps.Binary.Add : TensorOps.Binary.Mul, a.Value(0, "self"), a.Value(1, "other"), ev.Threads);
            }
            case "relu":
            {
                var a = new Args(node, values, ["self"]);
                a.Expect(1);
                return TensorOps.Activation(a.Tensor(0, "self"), Act.ReLU, ev.Threads);
            }
            default:
                throw new EngineInputException($"graph node '{node.Name}' calls method '{node.Target}', which the engine does not evaluate");
        }
    }

    private static object BinaryOp(GraphNode node, TensorOps.Binary op, object? a, object? b, int threads) => (a, b) switch
    {
        (Tensor x, Tensor y) => TensorOps.Apply(op, x, y, threads),
        (Tensor x, long or double) => TensorOps.Apply(op, x, Convert.ToDouble(b, System.Globalization.CultureInfo.InvariantCulture)),
        (long or double, Tensor y) => TensorOps.Apply(op, y, Convert.ToDouble(a, System.Globalization.CultureInfo.InvariantCulture)),
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

    /// <summary>A node's arguments matched to a signature: positional first, then keywords by name, then defaults.</summary>
    private sealed class Args
    {
        private readonly GraphNode _node;
        private readonly object?[] _positional;
        private readonly Dictionary<string, object?> _keywords = new(StringComparer.Ordinal);
        private readonly string[] _names;

        public Args(GraphNode node, Dictionary<string, object?> values, string[] names)
        {
            _node = node;
            _names = names;
            _positional = node.Args.Select(a => Resolve(a, values)).ToArray();
            foreach (var kv in node.Kwargs)
            {
                if (Array.IndexOf(names, kv.Key) < 0)
                    throw new EngineInputException($"graph node '{node.Name}': {node.Target} has no argument '{kv.Key}' (it takes {string.Join(", ", names)})");
                _keywords[kv.Key] = Resolve(kv.Value, values);
            }
        }

        public int Positional => _positional.Length;

        /// <summary>Requires between <paramref name="min"/> and <paramref name="max"/> arguments in all.</summary>
        public void Expect(int min, int? max = null)
        {
            var given = 0;
            for (var i = 0; i < _names.Length; i++) if (Has(i, _names[i])) given++;
            if (_positional.Length > _names.Length || given < min || given > (max ?? min))
                throw new EngineInputException(
                    $"graph node '{_node.Name}': {_node.Target} takes {(max is null || max == min ? $"{min}" : $"{min} to {max}")} arguments ({string.Join(", ", _names)}), got {_positional.Length} positional and {_keywords.Count} keyword");
        }

        private bool Has(int i, string name) => i < _positional.Length || _keywords.ContainsKey(name);

        public object? Value(int i, string name)
        {
            if (i < _positional.Length) return _positional[i];
            if (_keywords.TryGetValue(name, out var v)) return v;
            throw Error(name, "a value");
        }

        public Tensor Tensor(int i, string name) => Value(i, name) as Tensor ?? throw Error(name, "a tensor");

        public long Long(int i, string name, long fallback)
        {
            if (!Has(i, name)) return fallback;
            return Value(i, name) is long l ? l : throw Error(name, "an integer");
        }

        /// <summary>A boolean argument (absent means false).</summary>
        public bool Flag(int i, string name)
        {
            if (!Has(i, name)) return false;
            return Value(i, name) is bool b ? b : throw Error(name, "True or False");
        }

        public long? OptionalLong(int i, string name)
        {
            if (!Has(i, name)) return null;
            return Value(i, name) switch
            {
                null => null,
                long l => l,
                _ => throw Error(name, "an integer or None"),
            };
        }

        public int[] IntList(int i, string name)
        {
            if (Value(i, name) is not IReadOnlyList<object?> list) throw Error(name, "a list of integers");
            return [.. list.Select(v => v is long l ? checked((int)l) : throw Error(name, "a list of integers"))];
        }

        /// <summary>An <c>output_size</c>: one int (square) or a pair whose entries may be None (keep the input's size).</summary>
        public (int? H, int? W) SizePair(int i, string name)
        {
            int? Entry(object? v) => v switch
            {
                null => null,
                long l => checked((int)l),
                _ => throw Error(name, "an integer or a pair of integers (or None)"),
            };
            return Value(i, name) switch
            {
                long l => (checked((int)l), checked((int)l)),
                IReadOnlyList<object?> { Count: 2 } p => (Entry(p[0]), Entry(p[1])),
                _ => throw Error(name, "an integer or a pair of integers (or None)"),
            };
        }

        public EngineInputException Error(string name, string expected)
        {
            var i = Array.IndexOf(_names, name);
            var got = i >= 0 && i < _positional.Length ? Describe(_positional[i]) : _keywords.TryGetValue(name, out var v) ? Describe(v) : "nothing";
            return new EngineInputException($"graph node '{_node.Name}': argument '{name}' of {_node.Target} must be {expected}, got {got}");
        }
    }
}
