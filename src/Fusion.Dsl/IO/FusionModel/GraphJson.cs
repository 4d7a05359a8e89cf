using System.Text.Json;
using Fusion.Dsl.Graphs;

namespace Fusion.Dsl.IO;

/// <summary>
/// The <c>forward</c> list of a <c>fusion-fixture/1</c> file ⇄ <see cref="Graph"/>. Each node is
/// <c>{"op", "name", "target"?, "args"?, "kwargs"?}</c> with <c>op</c> one of <c>placeholder</c>, <c>call_module</c>,
/// <c>call_function</c>, <c>call_method</c>, <c>get_attr</c>, <c>output</c>. Arguments are <c>{"ref": node}</c>, lists
/// (nested freely), integers (read as <c>long</c>: written without fraction or exponent), other numbers (<c>double</c>),
/// booleans, strings and null.
/// </summary>
public static class GraphJson
{
    private static readonly (string Json, NodeOp Op)[] Ops =
    [
        ("placeholder", NodeOp.Placeholder), ("call_module", NodeOp.CallModule), ("call_function", NodeOp.CallFunction),
        ("call_method", NodeOp.CallMethod), ("get_attr", NodeOp.GetAttr), ("output", NodeOp.Output),
    ];

    /// <summary>Parses a <c>forward</c> list given as JSON text; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The text is not a valid graph.</exception>
    public static Graph Read(string json, string sourceName = "<forward>")
    {
        using var doc = JsonSource.Parse(json, sourceName);
        return Read(doc.RootElement, new JsonSource(sourceName), "forward");
    }

    /// <summary>The graph as an indented JSON list of nodes.</summary>
    public static string Write(Graph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, JsonOut.Indented)) Write(w, graph, "<forward>");
        return SafeTensors.Utf8.GetString(ms.ToArray());
    }

    internal static Graph Read(JsonElement list, JsonSource src, string location)
    {
        if (list.ValueKind != JsonValueKind.Array) throw src.Fail(location, $"the forward graph must be a list of nodes, got {JsonSource.Describe(list)}");
        var nodes = new List<GraphNode>();
        var i = 0;
        foreach (var n in list.EnumerateArray())
        {
            nodes.Add(ReadNode(n, src, $"{location}[{i}]"));
            i++;
        }
        try { return new Graph(nodes); }
        catch (ArgumentException e) { throw src.Fail(location, e.Message, e); }
    }

    private static GraphNode ReadNode(JsonElement n, JsonSource src, string location)
    {
        src.RequireObject(n, location, "a graph node", "op", "name", "target", "args", "kwargs");
        var opName = src.String(src.Required(n, "op", location, "a graph node"), location, "'op'");
        var op = Ops.FirstOrDefault(o => o.Json == opName);
        if (op.Json is null) throw src.Fail(location, $"unknown op '{opName}' (known: {string.Join(", ", Ops.Select(o => o.Json))})");
        var name = src.String(src.Required(n, "name", location, "a graph node"), location, "'name'");
        var where = $"{location} ('{name}')";
        string? target = JsonSource.TryGetNonNull(n, "target", out var t) ? src.String(t, where, "'target'") : null;

        var args = new List<GraphArg>();
        if (JsonSource.TryGetNonNull(n, "args", out var a))
        {
            if (a.ValueKind != JsonValueKind.Array) throw src.Fail(where, $"'args' must be a list, got {JsonSource.Describe(a)}");
            foreach (var item in a.EnumerateArray()) args.Add(ReadArg(item, src, where));
        }
        var kwargs = new List<KeyValuePair<string, GraphArg>>();
        if (JsonSource.TryGetNonNull(n, "kwargs", out var k))
        {
            src.RequireObject(k, where, "'kwargs'", k.ValueKind == JsonValueKind.Object ? k.EnumerateObject().Select(p => p.Name).ToArray() : []);
            foreach (var p in k.EnumerateObject()) kwargs.Add(new(p.Name, ReadArg(p.Value, src, where)));
        }
        try { return new GraphNode(op.Op, name, target, args, kwargs); }
        catch (ArgumentException e) { throw src.Fail(where, e.Message, e); }
    }

    private static GraphArg ReadArg(JsonElement e, JsonSource src, string location)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                return ReadTagged(e, src, location);
            case JsonValueKind.Array:
                return GraphArg.List(e.EnumerateArray().Select(x => ReadArg(x, src, location)).ToArray());
            case JsonValueKind.Number:
                if (JsonSource.IsIntegerLiteral(e))
                    return e.TryGetInt64(out var l) ? GraphArg.Const(l) : throw src.Fail(location, $"the integer {e.GetRawText()} does not fit in 64 bits");
                return GraphArg.Const(src.Double(e, location, "a number argument"));
            case JsonValueKind.String: return GraphArg.Const(e.GetString());
            case JsonValueKind.True: return GraphArg.Const(true);
            case JsonValueKind.False: return GraphArg.Const(false);
            case JsonValueKind.Null: return GraphArg.Const(null);
            default: throw src.Fail(location, $"unsupported argument {JsonSource.Describe(e)}");
        }
    }

    private static readonly string[] Tags = ["ref", "slice", "ellipsis", "dtype", "device", "memory_format", "float"];

    /// <summary>An object argument: a reference <c>{"ref": node}</c>, or one tagged Python constant.</summary>
    private static GraphArg ReadTagged(JsonElement e, JsonSource src, string location)
    {
        src.RequireObject(e, location, "an object argument", Tags);
        var props = e.EnumerateObject().ToList();
        if (props.Count != 1) throw src.Fail(location, $"an object argument has exactly one of {string.Join(", ", Tags)}, got {props.Count} keys");
        var p = props[0];
        string Text() => src.String(p.Value, location, $"'{p.Name}'");
        long? Part(JsonElement v) => v.ValueKind == JsonValueKind.Null ? null
            : JsonSource.IsIntegerLiteral(v) && v.TryGetInt64(out var l) ? l
            : throw src.Fail(location, $"a slice's parts are integers or null, got {JsonSource.Describe(v)}");
        switch (p.Name)
        {
            case "ref":
                return GraphArg.Ref(Text());
            case "slice":
                if (p.Value.ValueKind != JsonValueKind.Array || p.Value.GetArrayLength() != 3)
                    throw src.Fail(location, $"'slice' is [start, stop, step], got {JsonSource.Describe(p.Value)}");
                var parts = p.Value.EnumerateArray().Select(Part).ToArray();
                return GraphArg.Const(PyConstant.Slice(parts[0], parts[1], parts[2]));
            case "ellipsis":
                return p.Value.ValueKind == JsonValueKind.True ? GraphArg.Const(new PyConstant(PyConstantKind.Ellipsis))
                    : throw src.Fail(location, "'ellipsis' must be true");
            case "dtype": return GraphArg.Const(new PyConstant(PyConstantKind.DType, Text()));
            case "device": return GraphArg.Const(new PyConstant(PyConstantKind.Device, Text()));
            case "memory_format": return GraphArg.Const(new PyConstant(PyConstantKind.MemoryFormat, Text()));
            default: // "float": a non-finite number, which JSON has no literal for
                return Text() switch
                {
                    "inf" => GraphArg.Const(double.PositiveInfinity),
                    "-inf" => GraphArg.Const(double.NegativeInfinity),
                    "nan" => GraphArg.Const(double.NaN),
                    var t => throw src.Fail(location, $"'float' is \"inf\", \"-inf\" or \"nan\", got \"{t}\""),
                };
        }
    }

    internal static void Write(Utf8JsonWriter w, Graph graph, string fileName)
    {
        w.WriteStartArray();
        for (var i = 0; i < graph.Nodes.Length; i++)
        {
            var n = graph.Nodes[i];
            var location = $"forward[{i}] ('{n.Name}')";
            w.WriteStartObject();
            w.WriteString("op", Ops.First(o => o.Op == n.Op).Json);
            w.WriteString("name", n.Name);
            if (n.Target is not null) w.WriteString("target", n.Target);
            if (n.Args.Length > 0)
            {
                w.WriteStartArray("args");
                foreach (var a in n.Args) WriteArg(w, a, fileName, location);
                w.WriteEndArray();
            }
            if (n.Kwargs.Length > 0)
            {
                w.WriteStartObject("kwargs");
                foreach (var (key, a) in n.Kwargs)
                {
                    w.WritePropertyName(key);
                    WriteArg(w, a, fileName, location);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WriteArg(Utf8JsonWriter w, GraphArg a, string fileName, string location)
    {
        switch (a)
        {
            case RefArg r:
                w.WriteStartObject();
                w.WriteString("ref", r.Node);
                w.WriteEndObject();
                break;
            case ListArg l:
                w.WriteStartArray();
                foreach (var item in l.Items) WriteArg(w, item, fileName, location);
                w.WriteEndArray();
                break;
            case ConstArg { Value: PyConstant k }:
                w.WriteStartObject();
                switch (k.Kind)
                {
                    case PyConstantKind.Slice:
                        w.WriteStartArray("slice");
                        foreach (var part in new[] { k.Start, k.Stop, k.Step })
                            if (part is { } v) w.WriteNumberValue(v); else w.WriteNullValue();
                        w.WriteEndArray();
                        break;
                    case PyConstantKind.Ellipsis: w.WriteBoolean("ellipsis", true); break;
                    case PyConstantKind.DType: w.WriteString("dtype", k.Text); break;
                    case PyConstantKind.Device: w.WriteString("device", k.Text); break;
                    default: w.WriteString("memory_format", k.Text); break;
                }
                w.WriteEndObject();
                break;
            case ConstArg { Value: double d } when !double.IsFinite(d):
                w.WriteStartObject();
                w.WriteString("float", double.IsNaN(d) ? "nan" : d > 0 ? "inf" : "-inf");
                w.WriteEndObject();
                break;
            case ConstArg c:
                JsonOut.Value(w, c.Value, fileName, location);
                break;
            default:
                throw new ModelFormatException(fileName, location, $"unknown graph argument kind {a.GetType().Name}");
        }
    }
}
