using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Exports a user container's torch.fx-style forward graph: module calls through <see cref="OnnxExporter.Module"/> at
/// their dotted paths, the free functions and tensor methods the engine evaluates as their ONNX operators (add → Add,
/// cat → Concat, flatten → Flatten/Reshape, ...), with PyTorch's argument conventions. Python scalars stay constants and
/// are folded where they meet (<c>1 + 2</c>); a scalar meeting a tensor becomes a scalar initializer.
/// </summary>
internal sealed class GraphExporter(OnnxExporter exporter, UserModule owner, string path)
{
    private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);
    private OnnxGraphWriter W => exporter.Writer;

    public OnnxValue Run(Graph graph, OnnxValue input)
    {
        var inputs = 0;
        foreach (var node in graph.Nodes)
        {
            object? value = null;
            switch (node.Op)
            {
                case NodeOp.Placeholder:
                    if (inputs++ > 0) throw Refuse(node, "the graph takes more than one input; an exported model takes one tensor");
                    value = input;
                    break;
                case NodeOp.GetAttr:
                    value = Attribute(node);
                    break;
                case NodeOp.CallModule:
                {
                    var a = Args(node, ["input"]);
                    var target = node.Target!;
                    var module = ModulePath.Get(owner, target);
                    var x = a.Tensor(0, "input");
                    value = exporter.Module(module, x, OnnxExporter.Join(path, target));
                    if (module is Activation { Inplace: true } or Dropout { Inplace: true }) Rebind(x, (OnnxValue)value);
                    break;
                }
                case NodeOp.CallFunction:
                    value = Function(node);
                    if (node.Target is "relu" or "hardsigmoid" && Args(node, ["input", "inplace"]) is var fa && fa.Has(1, "inplace") && fa.Value(1, "inplace") is true)
                        Rebind(fa.Tensor(0, "input"), (OnnxValue)value!);
                    break;
                case NodeOp.CallMethod:
                    value = Method(node);
                    break;
                case NodeOp.Output:
                    if (node.Args.Length != 1 || Resolve(node.Args[0]) is not OnnxValue result)
                        throw Refuse(node, "the graph's output is not one tensor");
                    return result;
            }
            _values[node.Name] = value;
        }
        throw Refuse(null, "the graph has no output node");
    }

    /// <summary>PyTorch's in-place activations overwrite their input, so every later read of it sees the result (as the
    /// engine's interpreter rebinds them); values that are views of it under another shape are not tracked.</summary>
    private void Rebind(OnnxValue mutated, OnnxValue result)
    {
        foreach (var key in _values.Keys.ToArray())
            if (_values[key] is OnnxValue v && v.Name == mutated.Name) _values[key] = result;
    }

    private OnnxExportException Refuse(GraphNode? node, string problem)
        => new(path, owner.TypeName, node is null ? problem : $"graph node '{node.Name}': {problem}");

    private string NodePath(GraphNode node) => OnnxExporter.Join(path, node.Name);

    private OnnxValue Attribute(GraphNode node)
    {
        var target = node.Target!;
        var dot = target.LastIndexOf('.');
        var module = dot < 0 ? owner : ModulePath.Get(owner, target[..dot]);
        var tensor = module.State.TryGet(dot < 0 ? target : target[(dot + 1)..])
                     ?? throw Refuse(node, $"reads attribute '{target}', which is not a parameter or buffer");
        return new OnnxValue(W.Initializer(OnnxExporter.Join(path, target), tensor), [.. tensor.Shape]);
    }

    private object? Function(GraphNode node)
    {
        switch (node.Target)
        {
            case "add":
            case "mul":
            {
                var a = Args(node, ["input", "other"]);
                return Binary(node, a.Value(0, "input"), a.Value(1, "other"));
            }
            case "relu":
                return exporter.Activation(ActivationKind.ReLU, Args(node, ["input", "inplace"]).Tensor(0, "input"), NodePath(node));
            case "hardsigmoid":
                return exporter.Activation(ActivationKind.Hardsigmoid, Args(node, ["input", "inplace"]).Tensor(0, "input"), NodePath(node));
            case "flatten":
            {
                var a = Args(node, ["input", "start_dim", "end_dim"]);
                return exporter.Flatten(a.Tensor(0, "input"), a.Long(1, "start_dim", 0), a.Long(2, "end_dim", -1), NodePath(node), null, "flatten");
            }
            case "cat":
            {
                var a = Args(node, ["tensors", "dim"]);
                var parts = (a.Value(0, "tensors") as object?[] ?? throw Refuse(node, "cat takes a list of tensors"))
                    .Select(v => v as OnnxValue ?? throw Refuse(node, "cat takes a list of tensors")).ToArray();
                return Cat(node, parts, a.Long(1, "dim", 0));
            }
            case "adaptive_avg_pool2d":
            {
                var a = Args(node, ["input", "output_size"]);
                var (h, w) = SizePair(node, a.Value(1, "output_size"));
                return exporter.AdaptiveAvgPool(a.Tensor(0, "input"), h, w, NodePath(node), null);
            }
            case "reshape":
            {
                var a = Args(node, ["input", "shape"]);
                return Reshape(node, a.Tensor(0, "input"), IntList(node, a.Value(1, "shape")));
            }
            default:
                throw Refuse(node, $"function '{node.Target}' has no ONNX form in this exporter");
        }
    }

    private object? Method(GraphNode node)
    {
        switch (node.Target)
        {
            case "contiguous":
                return Args(node, ["self", "memory_format"]).Tensor(0, "self");
            case "squeeze":
            {
                var a = Args(node, ["self", "dim"]);
                var x = a.Tensor(0, "self");
                var dim = a.Has(1, "dim") ? a.Value(1, "dim") : null;
                if (dim is null)
                {
                    var kept = x.Shape.Where(d => d != 1).ToArray();
                    return kept.Length == x.Rank ? x : W.Node("Squeeze", NodePath(node), [x.Name], kept);
                }
                var axis = ShapeRules.Axis(dim as long? ?? throw Refuse(node, "squeeze's dim must be an integer"), x.Rank)
                           ?? throw Refuse(node, $"squeeze dim {dim} is out of range for {x.ShapeText}");
                // PyTorch leaves a dimension whose size is not 1; ONNX would refuse it.
                if (x.Rank == 0 || x.Shape[axis] != 1) return x;
                return W.Node("Squeeze", NodePath(node), [x.Name, W.Int64s(axis)], [.. x.Shape[..axis], .. x.Shape[(axis + 1)..]]);
            }
            case "unsqueeze":
            {
                var a = Args(node, ["self", "dim"]);
                var x = a.Tensor(0, "self");
                var axis = ShapeRules.Axis(a.Long(1, "dim", 0), x.Rank + 1)
                           ?? throw Refuse(node, $"unsqueeze dim is out of range for {x.ShapeText}");
                return W.Node("Unsqueeze", NodePath(node), [x.Name, W.Int64s(axis)], [.. x.Shape[..axis], 1, .. x.Shape[axis..]]);
            }
            case "reshape":
            case "view":
            {
                var a = Args(node, ["self", "shape"]);
                var x = a.Tensor(0, "self");
                var given = node.Args.Skip(1).Select(Resolve).ToArray();
                var shape = given.Length == 1 && given[0] is object?[] list ? IntList(node, list)
                    : given.Length == 0 ? IntList(node, a.Value(1, "shape"))
                    : IntList(node, given);
                return Reshape(node, x, shape);
            }
            case "flatten":
            {
                var a = Args(node, ["self", "start_dim", "end_dim"]);
                return exporter.Flatten(a.Tensor(0, "self"), a.Long(1, "start_dim", 0), a.Long(2, "end_dim", -1), NodePath(node), null, "flatten");
            }
            case "add":
            case "mul":
            {
                var a = Args(node, ["self", "other"]);
                return Binary(node, a.Value(0, "self"), a.Value(1, "other"));
            }
            case "relu":
                return exporter.Activation(ActivationKind.ReLU, Args(node, ["self"]).Tensor(0, "self"), NodePath(node));
            default:
                throw Refuse(node, $"method '{node.Target}' has no ONNX form in this exporter");
        }
    }

    private object Binary(GraphNode node, object? a, object? b)
    {
        var op = node.Target == "add" ? "Add" : "Mul";
        switch (a, b)
        {
            case (OnnxValue x, OnnxValue y):
            {
                var shape = ShapeRules.Broadcast(x.Shape, y.Shape)
                            ?? throw Refuse(node, $"{node.Target} of shapes {x.ShapeText} and {y.ShapeText}, which do not broadcast");
                return W.Node(op, NodePath(node), [x.Name, y.Name], shape);
            }
            case (OnnxValue x, long or double):
                return W.Node(op, NodePath(node), [x.Name, W.Scalar(ToFloat(b))], x.Shape);
            case (long or double, OnnxValue y):
                return W.Node(op, NodePath(node), [W.Scalar(ToFloat(a)), y.Name], y.Shape);
            case (long x, long y):
                return op == "Add" ? x + y : x * y;
            case (long or double, long or double):
                return op == "Add" ? ToDouble(a) + ToDouble(b) : ToDouble(a) * ToDouble(b);
            default:
                throw Refuse(node, $"{node.Target} of these operands is not supported");
        }
    }

    private static double ToDouble(object? v) => Convert.ToDouble(v, CultureInfo.InvariantCulture);
    private static float ToFloat(object? v) => (float)ToDouble(v);

    private OnnxValue Cat(GraphNode node, OnnxValue[] parts, long dim)
    {
        if (parts.Length == 0) throw Refuse(node, "cat of an empty list");
        var rank = parts[0].Rank;
        var axis = ShapeRules.Axis(dim, rank) ?? throw Refuse(node, $"cat dim {dim} is out of range for {parts[0].ShapeText}");
        var shape = (int[])parts[0].Shape.Clone();
        foreach (var p in parts.Skip(1))
        {
            if (p.Rank != rank || Enumerable.Range(0, rank).Any(i => i != axis && p.Shape[i] != shape[i]))
                throw Refuse(node, $"cat of shapes {parts[0].ShapeText} and {p.ShapeText} along dim {dim}");
            shape[axis] += p.Shape[axis];
        }
        if (parts.Length == 1) return parts[0];
        return W.Node("Concat", NodePath(node), parts.Select(p => p.Name), shape, OnnxGraphWriter.Int("axis", axis));
    }

    private OnnxValue Reshape(GraphNode node, OnnxValue x, int[] shape)
    {
        var count = ShapeRules.Count(x.Shape);
        var infer = Array.FindAll(shape, d => d == -1).Length;
        // PyTorch's 0 is a size of zero while ONNX's means "copy": only sizes above zero (and one -1) are written.
        if (infer > 1 || shape.Any(d => d < -1 || d == 0))
            throw Refuse(node, $"reshape to ({string.Join(", ", shape)}) is not a shape (one -1 at most, sizes positive)");
        var known = ShapeRules.Count([.. shape.Where(d => d != -1)]);
        var resolved = shape.Select(d => d == -1 ? (int)(known == 0 ? 0 : count / known) : d).ToArray();
        if (ShapeRules.Count(resolved) != count)
            throw Refuse(node, $"cannot reshape {x.ShapeText} to ({string.Join(", ", shape)})");
        return W.Node("Reshape", NodePath(node), [x.Name, W.Int64s([.. shape.Select(d => (long)d)])], resolved);
    }

    private int[] IntList(GraphNode node, object? v)
    {
        if (v is long single) return [checked((int)single)];
        if (v is not object?[] list) throw Refuse(node, "expected a list of integers");
        return [.. list.Select(i => i is long l ? checked((int)l) : throw Refuse(node, "expected a list of integers"))];
    }

    private (int? H, int? W) SizePair(GraphNode node, object? v)
    {
        int? Entry(object? e) => e switch
        {
            null => null,
            long l => checked((int)l),
            _ => throw Refuse(node, "output_size must be an integer or a pair of integers (or None)"),
        };
        return v switch
        {
            long l => (checked((int)l), checked((int)l)),
            object?[] { Length: 2 } p => (Entry(p[0]), Entry(p[1])),
            _ => throw Refuse(node, "output_size must be an integer or a pair of integers (or None)"),
        };
    }

    private object? Resolve(GraphArg arg) => arg switch
    {
        RefArg r => _values[r.Node],
        ConstArg c => c.Value,
        ListArg l => l.Items.Select(Resolve).ToArray(),
        _ => throw new InvalidOperationException($"unknown graph argument {arg}"),
    };

    private CallArgs Args(GraphNode node, string[] names) => new(this, node, names);

    /// <summary>A node's arguments matched to a signature: positional first, then keywords by name, then defaults.</summary>
    private sealed class CallArgs
    {
        private readonly GraphExporter _owner;
        private readonly GraphNode _node;
        private readonly object?[] _positional;
        private readonly Dictionary<string, object?> _keywords = new(StringComparer.Ordinal);

        public CallArgs(GraphExporter owner, GraphNode node, string[] names)
        {
            _owner = owner;
            _node = node;
            _positional = node.Args.Select(owner.Resolve).ToArray();
            foreach (var kv in node.Kwargs)
            {
                if (Array.IndexOf(names, kv.Key) < 0) throw owner.Refuse(node, $"{node.Target} has no argument '{kv.Key}'");
                _keywords[kv.Key] = owner.Resolve(kv.Value);
            }
        }

        public bool Has(int i, string name) => i < _positional.Length || _keywords.ContainsKey(name);

        public object? Value(int i, string name)
        {
            if (i < _positional.Length) return _positional[i];
            if (_keywords.TryGetValue(name, out var v)) return v;
            throw _owner.Refuse(_node, $"{_node.Target} needs argument '{name}'");
        }

        public OnnxValue Tensor(int i, string name)
            => Value(i, name) as OnnxValue ?? throw _owner.Refuse(_node, $"argument '{name}' of {_node.Target} must be a tensor");

        public long Long(int i, string name, long fallback)
            => !Has(i, name) ? fallback : Value(i, name) as long? ?? throw _owner.Refuse(_node, $"argument '{name}' of {_node.Target} must be an integer");
    }
}
