using System.Globalization;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;
using Google.Protobuf;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Collects the nodes and initializers of the graph being exported, in order (a node is added after the values it reads, so
/// the graph is topologically sorted as ONNX requires). Node names are the module paths, made unique by a <c>#2</c>,
/// <c>#3</c> suffix when a module is called more than once; value names are the node names they come from. Initializers
/// are kept as the model's own tensors and serialized only when the file is written.
/// </summary>
internal sealed class OnnxGraphWriter
{
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Tensor> _initializerByName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _constants = new(StringComparer.Ordinal);

    /// <summary>The nodes in execution order.</summary>
    public List<NodeProto> Nodes { get; } = [];

    /// <summary>The initializers in first-use order: ONNX name and the tensor whose elements are written.</summary>
    public List<KeyValuePair<string, Tensor>> Initializers { get; } = [];

    /// <summary>Adds a node whose single output has <paramref name="shape"/>; returns that output.</summary>
    public OnnxValue Node(string opType, string name, IEnumerable<string> inputs, int[] shape, params AttributeProto[] attributes)
    {
        var unique = Unique(name.Length == 0 ? opType : name);
        var node = new NodeProto { OpType = opType, Name = unique };
        node.Input.AddRange(inputs);
        node.Output.Add(unique);
        node.Attribute.AddRange(attributes);
        Nodes.Add(node);
        return new OnnxValue(unique, shape);
    }

    /// <summary>Adds a node with one output per entry of <paramref name="shapes"/> (Split); returns those outputs.</summary>
    public OnnxValue[] MultiNode(string opType, string name, IEnumerable<string> inputs, int[][] shapes, params AttributeProto[] attributes)
    {
        var unique = Unique(name.Length == 0 ? opType : name);
        var node = new NodeProto { OpType = opType, Name = unique };
        node.Input.AddRange(inputs);
        var outputs = shapes.Select((s, i) => new OnnxValue(i == 0 ? unique : Unique(unique + ":" + i.ToString(CultureInfo.InvariantCulture)), s)).ToArray();
        node.Output.AddRange(outputs.Select(o => o.Name));
        node.Attribute.AddRange(attributes);
        Nodes.Add(node);
        return outputs;
    }

    /// <summary>
    /// Registers a model tensor as an initializer under its <c>state_dict</c> key; the same key for the same tensor is
    /// written once. Returns the ONNX name.
    /// </summary>
    /// <exception cref="InvalidOperationException">The key is already taken by another tensor (a bug of the exporter).</exception>
    public string Initializer(string key, Tensor tensor)
    {
        if (_initializerByName.TryGetValue(key, out var existing))
        {
            if (ReferenceEquals(existing, tensor) || existing.Equals(tensor)) return key;
            throw new InvalidOperationException($"two different tensors were exported under the name '{key}'");
        }
        _names.Add(key);
        _initializerByName[key] = tensor;
        Initializers.Add(new(key, tensor));
        return key;
    }

    /// <summary>A constant int64 vector (axes, pads, shapes), shared by every node that needs the same values.</summary>
    public string Int64s(params long[] values)
        => Constant("const::i64[" + string.Join(",", values) + "]", () => Tensor.FromInt64(values, values.Length));

    /// <summary>A constant float scalar (Clip bounds, scalar operands of add and mul), shared by value.</summary>
    public string Scalar(float value)
        => Constant("const::f32(" + value.ToString("R", CultureInfo.InvariantCulture) + ")", () => Tensor.FromFloat32([value]));

    private string Constant(string key, Func<Tensor> make)
    {
        if (_constants.TryGetValue(key, out var name)) return name;
        name = Unique(key);
        _constants[key] = name;
        Initializer(name, make());
        return name;
    }

    /// <summary>Renames value <paramref name="from"/> to <paramref name="to"/> everywhere (the graph output gets a fixed name).</summary>
    public void Rename(string from, string to)
    {
        foreach (var n in Nodes)
        {
            for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == from) n.Input[i] = to;
            for (var i = 0; i < n.Output.Count; i++) if (n.Output[i] == from) n.Output[i] = to;
        }
    }

    /// <summary>Whether a node produces value <paramref name="name"/>.</summary>
    public bool IsNodeOutput(string name) => Nodes.Any(n => n.Output.Contains(name));

    /// <summary>A name no value, node or initializer has yet (<paramref name="name"/>, else with a <c>#2</c>, <c>#3</c>
    /// suffix), now reserved.</summary>
    public string NewName(string name) => Unique(name);

    /// <summary>Reserves a name (the graph input's).</summary>
    public void Reserve(string name) => _names.Add(name);

    private string Unique(string name)
    {
        if (_names.Add(name)) return name;
        for (var i = 2; ; i++)
        {
            var candidate = name + "#" + i.ToString(CultureInfo.InvariantCulture);
            if (_names.Add(candidate)) return candidate;
        }
    }

    /// <summary>An <c>INT</c> attribute.</summary>
    public static AttributeProto Int(string name, long value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>An <c>INTS</c> attribute.</summary>
    public static AttributeProto Ints(string name, IEnumerable<int> values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values.Select(v => (long)v));
        return a;
    }

    /// <summary>A <c>FLOAT</c> attribute.</summary>
    public static AttributeProto Float(string name, float value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>A <c>STRING</c> attribute.</summary>
    public static AttributeProto String(string name, string value)
        => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };
}
