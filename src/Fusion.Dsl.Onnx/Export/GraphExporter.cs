using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

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
                    var target = node.Target!;
                    var module = ModulePath.Get(owner, target);
                    if (module is FusedModule { InputCount: 2 } twoInputs)
                    {
                        if (node.Args.Length != 2 || node.Kwargs.Length != 0 || Resolve(node.Args[0]) is not OnnxValue first || Resolve(node.Args[1]) is not OnnxValue residual)
                            throw Refuse(node, $"module {target} ({twoInputs.TypeName}) is called with something other than an input tensor and a residual tensor");
                        value = exporter.Residual(twoInputs, first, residual, ModulePath.Join(path, target));
                        break;
                    }
                    if (node.Args.Length + node.Kwargs.Length != 1 || Resolve(node.Args.Length == 1 ? node.Args[0] : node.Kwargs[0].Value) is not OnnxValue x)
                        throw Refuse(node, $"module {target} is called with something other than one tensor");
                    value = exporter.Module(module, x, ModulePath.Join(path, target));
                    if (module is Activation { Inplace: true } or Dropout { Inplace: true }) Rebind(x, (OnnxValue)value);
                    break;
                }
                case NodeOp.CallFunction:
                case NodeOp.CallMethod:
                {
                    var op = GraphOps.Of(node)
                             ?? throw Refuse(node, $"{(node.Op == NodeOp.CallMethod ? "the tensor method ." + node.Target + "()" : "the function " + node.Target)} is carried as an opaque operation and has no ONNX form here");
                    try
                    {
                        var call = op.Bind(node, Resolve);
                        value = exporter.Hook is { } hook ? hook.Operation(call, NodePath(node), () => Call(call)) : Call(call);
                        if (op.IsInplace(node)) Rebind(call.Get<OnnxValue>(op.Parameters[0].Name, "a tensor"), (OnnxValue)value!);
                    }
                    catch (GraphCallException e) { throw Refuse(node, e.Problem); }
                    break;
                }
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

    private string NodePath(GraphNode node) => ModulePath.Join(path, node.Name);

    private OnnxValue Attribute(GraphNode node)
    {
        var target = node.Target!;
        var tensor = owner.Attribute(target) ?? throw Refuse(node, $"reads attribute '{target}', which is not a parameter or buffer");
        return new OnnxValue(W.Initializer(ModulePath.Join(path, target), tensor), [.. tensor.Shape]);
    }

    private object? Call(OpCall a)
    {
        var node = a.Node;
        var self = a.Op.Parameters[0].Name;
        OnnxValue X() => a.Get<OnnxValue>(self, "a tensor");
        switch (a.Op.Name)
        {
            case "add":
            case "mul":
                return Binary(node, a.Value(self), a.Value("other"));
            case "relu":
                return exporter.Activation(ActivationKind.ReLU, X(), NodePath(node));
            case "hardsigmoid":
                return exporter.Activation(ActivationKind.Hardsigmoid, X(), NodePath(node));
            case "flatten":
                return exporter.Flatten(X(), a.Long("start_dim"), a.Long("end_dim"), NodePath(node), null, "flatten");
            case "cat":
            {
                var parts = a.Get<object?[]>("tensors", "a list of tensors")
                    .Select(v => v as OnnxValue ?? throw a.Error("tensors", "a list of tensors")).ToArray();
                return Cat(node, parts, a.Long("dim"));
            }
            case "adaptive_avg_pool2d":
            {
                var (h, w) = a.SizePair("output_size");
                return exporter.AdaptiveAvgPool(X(), h, w, NodePath(node), null);
            }
            case "reshape":
            case "view":
                return Reshape(node, X(), a.IntList("shape"));
            case "contiguous":
                return X();
            case "squeeze":
            {
                var x = X();
                if (a.OptionalLong("dim") is not { } dim)
                {
                    var kept = x.Shape.Where(d => d != 1).ToArray();
                    return kept.Length == x.Rank ? x : W.Node("Squeeze", NodePath(node), [x.Name], kept);
                }
                var axis = Dimensions.Wrap(dim, x.Rank) ?? throw Refuse(node, $"squeeze dim {dim} is out of range for {x.ShapeText}");
                // PyTorch leaves a dimension whose size is not 1; ONNX would refuse it.
                if (x.Rank == 0 || x.Shape[axis] != 1) return x;
                return W.Node("Squeeze", NodePath(node), [x.Name, W.Int64s(axis)], [.. x.Shape[..axis], .. x.Shape[(axis + 1)..]]);
            }
            case "unsqueeze":
            {
                var x = X();
                var axis = Dimensions.Wrap(a.Long("dim"), x.Rank + 1) ?? throw Refuse(node, $"unsqueeze dim is out of range for {x.ShapeText}");
                return W.Node("Unsqueeze", NodePath(node), [x.Name, W.Int64s(axis)], [.. x.Shape[..axis], 1, .. x.Shape[axis..]]);
            }
            case "sub":
            case "div":
                if (a.Op.Name == "div" && a.Value("rounding_mode") is not null) throw Refuse(node, "div with a rounding_mode has no ONNX form here");
                return Binary(node, a.Value(self), a.Value("other"));
            default:
                var value = exporter.Operators.Call(a, NodePath(node));
                return ReferenceEquals(value, OperatorExporter.NotHandled) ? throw Refuse(node, $"{a.Op} has no ONNX form in this exporter") : value;
        }
    }

    private object Binary(GraphNode node, object? a, object? b)
    {
        var op = node.Target switch { "add" => "Add", "sub" => "Sub", "div" => "Div", _ => "Mul" };
        switch (a, b)
        {
            case (OnnxValue x, OnnxValue y):
            {
                var shape = Broadcast.Shape(x.Shape, y.Shape)
                            ?? throw Refuse(node, $"{node.Target} of shapes {x.ShapeText} and {y.ShapeText}, which do not broadcast");
                return W.Node(op, NodePath(node), [x.Name, y.Name], shape);
            }
            case (OnnxValue x, long or double):
                return W.Node(op, NodePath(node), [x.Name, W.Scalar(ToFloat(b))], x.Shape);
            case (long or double, OnnxValue y):
                return W.Node(op, NodePath(node), [W.Scalar(ToFloat(a)), y.Name], y.Shape);
            // Python arithmetic on sizes and scalars, as the engine computes it (division is true division).
            case (long x, long y) when op != "Div":
                return op switch { "Add" => x + y, "Sub" => x - y, _ => x * y };
            case (long or double, long or double):
                return op switch
                {
                    "Add" => ToDouble(a) + ToDouble(b),
                    "Sub" => ToDouble(a) - ToDouble(b),
                    "Div" => ToDouble(a) / ToDouble(b),
                    _ => ToDouble(a) * ToDouble(b),
                };
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
        var axis = Dimensions.Wrap(dim, rank) ?? throw Refuse(node, $"cat dim {dim} is out of range for {parts[0].ShapeText}");
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
        // PyTorch's 0 is a size of zero while ONNX's means "copy": only sizes above zero (and one -1) are written.
        if (shape.Any(d => d < -1 || d == 0))
            throw Refuse(node, $"reshape to ({string.Join(", ", shape)}) is not a shape (one -1 at most, sizes positive)");
        int[] resolved;
        try { resolved = Tensor.ResolveShape(shape, Tensor.Product(x.Shape)); }
        catch (ArgumentException e) { throw Refuse(node, $"cannot reshape {x.ShapeText} to ({string.Join(", ", shape)}): {e.Message}"); }
        // With a dynamic batch, a leading size equal to the value's own first dimension (x.reshape(x.size(0), -1), the
        // view(batchsize, ...) of a channel shuffle: size() reads the export's batch as a constant) is written as ONNX's 0,
        // "copy the input's dimension", so the batch stays symbolic. Where that dimension is not the batch it is a constant,
        // and copying it gives the same size.
        var target = shape.Select(d => (long)d).ToArray();
        if (exporter.Options.DynamicBatch && x.Rank > 0 && target.Length > 0 && target[0] == x.Shape[0]) target[0] = 0;
        return W.Node("Reshape", NodePath(node), [x.Name, W.Int64s(target)], resolved);
    }

    private object? Resolve(GraphArg arg) => arg switch
    {
        RefArg r => _values[r.Node],
        ConstArg c => c.Value,
        ListArg l => l.Items.Select(Resolve).ToArray(),
        _ => throw new InvalidOperationException($"unknown graph argument {arg}"),
    };
}
