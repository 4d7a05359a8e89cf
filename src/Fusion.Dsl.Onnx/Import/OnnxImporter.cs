using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.IO;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Onnx.Import;

/// <summary>
/// Turns an ONNX graph of the operators the exporter writes back into a module tree plus a torch.fx-style forward graph.
/// Operators with weights (Conv, ConvTranspose, BatchNormalization, Gemm) become modules at the path their initializer
/// names give (<c>layer1.0.conv1.weight</c> → <c>layer1.0.conv1</c>); parameter-free operators become modules at the path
/// of their node name (torch.onnx.export's <c>/layer1/layer1.0/relu/Relu</c> → <c>layer1.0.relu</c>, this exporter's
/// <c>layer1.0.relu</c>), or free functions where the name points at a container or nothing (ResNet's functional ReLU
/// after the addition). Graph operators (Add, Sub, Mul, Div, Concat, Flatten, Reshape, Squeeze, Unsqueeze, Transpose,
/// ReduceMean, Softmax, MatMul of two values) become function and method nodes. Every other node, and every node whose
/// configuration has no PyTorch form here (asymmetric pads, a Clip that is not ReLU6, an operator of another domain), is
/// carried verbatim: an opaque <c>onnx::Op</c> call that keeps the dataflow (so fusion works around it and the engine refuses
/// it by name) while the file's own node is what <see cref="WriteBack.OnnxWriteBack"/> writes back. Malformed files (cycles,
/// dangling inputs, sizes past the limits, unreadable tensors) are refused with the node's or tensor's name.
/// </summary>
internal sealed class OnnxImporter
{
    /// <summary>The oldest opset read: 13 moved Squeeze/Unsqueeze axes to inputs, which this importer expects.</summary>
    public const long MinOpset = 13;

    private readonly OnnxFileReader _file;
    private readonly GraphProto _graph;
    private readonly Dictionary<string, Tensor> _constants = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Node, int Rank)> _values = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _uses = new(StringComparer.Ordinal);
    private readonly List<GraphNode> _nodes = [];
    private readonly HashSet<string> _nodeNames = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _nextNodeSuffix = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> _readers = new(StringComparer.Ordinal);   // the nodes reading each value, each once
    private readonly ModuleTree _tree = new();
    private readonly HashSet<string> _weightPaths = new(StringComparer.Ordinal);
    private string[] _sortedWeightPaths = [];
    private readonly HashSet<NodeProto> _skipped = [];
    private readonly List<(string Name, Tensor Tensor)> _rootState = [];
    private readonly Dictionary<NodeProto, (PaddingMode Mode, int[] Pads)> _padBefore = [];  // begins then ends, spatial axes
    private readonly Dictionary<string, string> _aliasOf = new(StringComparer.Ordinal);   // a value → the skipped Pad's output that equals it
    private readonly HashSet<string> _verbatim = new(StringComparer.Ordinal);   // initializers of element types not decoded
    private readonly Dictionary<string, Tensor> _initializers = new(StringComparer.Ordinal);   // the decoded ones
    private readonly Dictionary<string, List<OnnxModuleSource>> _sources = new(StringComparer.Ordinal);   // module path → the nodes calling it
    private readonly SortedSet<string> _carried = new(StringComparer.Ordinal);   // the operators carried verbatim

    private OnnxImporter(OnnxFileReader file, GraphProto graph) { _file = file; _graph = graph; }

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is not a readable ONNX model of the supported operators; the message
    /// names the node or tensor.</exception>
    public static OnnxImport Read(string path) => Read(OnnxFileReader.Open(path));

    /// <summary>Reads a file already opened: its bytes are read from <paramref name="input"/>, once.</summary>
    /// <exception cref="ModelFormatException">As for <see cref="Read(string)"/>.</exception>
    public static OnnxImport Read(ModelInput input) => Read(OnnxFileReader.Parse(input.ReadAll(), input.Path));

    private static OnnxImport Read((OnnxFileReader File, ModelProto Model) opened)
    {
        var (file, model) = opened;
        if (model.IrVersion < 3) throw file.Error(null, $"IR version {model.IrVersion} is older than 3, the oldest read");
        long? opset = null;
        foreach (var o in model.OpsetImport)
            if (o.Domain is "" or "ai.onnx") opset = o.Version;
        if (opset is null) throw file.Error(null, "the model imports no opset of the default ONNX domain");
        if (opset < MinOpset) throw file.Error(null, $"opset {opset} is older than {MinOpset}, the oldest this importer reads; convert it with onnx.version_converter first");
        var importer = new OnnxImporter(file, model.Graph);
        var (root, shape, dynamic) = importer.Run();
        // The decoded initializers leave the kept model (their tensors are the modules' own), so the weights are held once.
        var decoded = new List<KeyValuePair<string, Tensor>>();
        foreach (var t in model.Graph.Initializer.ToArray())
        {
            if (!importer._initializers.TryGetValue(t.Name, out var tensor)) continue;
            decoded.Add(new(t.Name, tensor));
            model.Graph.Initializer.Remove(t);
        }
        var source = new OnnxSource(model, root, decoded, importer._sources);
        return new OnnxImport(root, shape, dynamic, opset.Value, [file.Path, .. file.ExternalFiles], source, [.. importer._carried]);
    }

    private ModelFormatException Error(string? key, string problem) => _file.Error(key, problem);

    private static string NodeKey(NodeProto n) => n.Name.Length > 0 ? $"node '{n.Name}' ({n.OpType})" : $"a {n.OpType} node";

    private (Module Root, int[] Shape, bool Dynamic) Run()
    {
        foreach (var t in _graph.Initializer)
        {
            if (_constants.ContainsKey(t.Name) || _verbatim.Contains(t.Name)) throw Error(t.Name, "two initializers have this name");
            // A tensor of another element type (bool masks, int32 indices) only an opaque node reads: kept in the file as is.
            if (OnnxFileReader.IsDecodable(t)) _constants[t.Name] = _initializers[t.Name] = _file.Decode(t, t.Name);
            else if (t.DataLocation == TensorProto.Types.DataLocation.External)
                throw Error(t.Name, $"element type {(TensorProto.Types.DataType)t.DataType} stored as external data is not supported (float32 and int64 are)");
            else _verbatim.Add(t.Name);
        }
        var inputs = _graph.Input.Where(i => !_constants.ContainsKey(i.Name) && !_verbatim.Contains(i.Name)).ToArray();
        if (inputs.Length != 1)
            throw Error(null, $"the graph has {inputs.Length} inputs besides its initializers ({string.Join(", ", inputs.Select(i => i.Name))}); a model takes one tensor");
        var (shape, dynamic) = InputShape(inputs[0]);
        CheckTopology(inputs[0].Name);
        foreach (var n in _graph.Node)
        {
            foreach (var i in n.Input) _uses[i] = _uses.GetValueOrDefault(i) + 1;
            foreach (var i in n.Input.Distinct())
            {
                if (!_readers.TryGetValue(i, out var list)) _readers[i] = list = [];
                list.Add(n);
            }
        }
        foreach (var o in _graph.Output) _uses[o.Name] = _uses.GetValueOrDefault(o.Name) + 1;
        foreach (var n in _graph.Node)
            if (n.OpType is "Conv" or "ConvTranspose" or "BatchNormalization" or "Gemm" && n.Input.Count > 1 && WeightPath(n.Input[1]) is { } p)
                _weightPaths.Add(p);
        _sortedWeightPaths = [.. _weightPaths.Order(StringComparer.Ordinal)];

        Add(new GraphNode(NodeOp.Placeholder, UniqueNode("x")), inputs[0].Name, shape.Length);
        foreach (var n in _graph.Node)
            if (!_skipped.Contains(n)) Translate(n);
        if (_graph.Output.Count != 1) throw Error(null, $"the graph has {_graph.Output.Count} outputs; a model returns one tensor");
        var output = _graph.Output[0].Name;
        if (!_values.TryGetValue(output, out var result)) throw Error(output, "the graph's output is a constant, not computed from the input");
        _nodes.Add(new GraphNode(NodeOp.Output, UniqueNode("output"), null, [GraphArg.Ref(result.Node)]));
        var state = TensorDict.Create([.. _rootState.Select(s => (s.Name, (Tensor?)s.Tensor))]);
        var name = string.IsNullOrWhiteSpace(_graph.Name) ? "OnnxModel" : _graph.Name;
        try
        {
            return (UserModule.Create(name, _tree.Build(), new Graph(_nodes), state: state), shape, dynamic);
        }
        catch (ArgumentException e)
        {
            // The names above are checked; this is the last guard, so that no file ends the import with another exception.
            throw Error(null, $"the imported modules and graph do not form a model: {e.Message}");
        }
    }

    private (int[] Shape, bool Dynamic) InputShape(ValueInfoProto input)
    {
        var t = input.Type?.TensorType;
        if (t is null || t.ElemType != (int)TensorProto.Types.DataType.Float)
            throw Error(input.Name, "the graph input is not a float32 tensor");
        if (t.Shape is null) throw Error(input.Name, "the graph input has no shape (its rank is needed)");
        var shape = new int[t.Shape.Dim.Count];
        var dynamic = false;
        for (var i = 0; i < shape.Length; i++)
        {
            var d = t.Shape.Dim[i];
            if (d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue && d.DimValue is > 0 and <= int.MaxValue) shape[i] = (int)d.DimValue;
            else { shape[i] = 1; if (i == 0) dynamic = true; }
        }
        // The shape is the probe input a tool builds: one it could never allocate is refused here, naming the file.
        if (Limits.ElementCount(shape) is null)
            throw Error(input.Name, $"the graph input's shape [{string.Join(", ", shape)}] has more than the limit of {Limits.MaxElements:N0} elements per tensor");
        return (shape, dynamic);
    }

    /// <summary>Every input is produced before it is read: by the graph input, an initializer or an earlier node. A value
    /// produced later means a cycle (ONNX graphs are topologically sorted); one produced nowhere dangles.</summary>
    private void CheckTopology(string input)
    {
        var produced = new HashSet<string>(_constants.Keys.Concat(_verbatim), StringComparer.Ordinal) { input, "" };
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (var n in _graph.Node)
            foreach (var o in n.Output)
                if (o.Length > 0 && !producers.TryAdd(o, n)) throw Error(o, $"tensor is produced twice ({NodeKey(producers[o])} and {NodeKey(n)})");
        foreach (var n in _graph.Node)
        {
            foreach (var i in n.Input)
            {
                if (produced.Contains(i)) continue;
                if (producers.TryGetValue(i, out var later))
                    throw Error(n.Name, $"{NodeKey(n)} reads tensor '{i}' before {NodeKey(later)} produces it: the graph has a cycle or is not topologically sorted");
                throw Error(n.Name, $"{NodeKey(n)} reads tensor '{i}', which no node, initializer or graph input produces (a dangling input)");
            }
            foreach (var o in n.Output) produced.Add(o);
        }
        foreach (var o in _graph.Output)
            if (!produced.Contains(o.Name)) throw Error(o.Name, "the graph output is produced by no node (a dangling output)");
    }

    // ---- names and paths ------------------------------------------------------------------------------------

    /// <summary>The module path a weight's name gives: <c>layer1.0.conv1.weight</c> → <c>layer1.0.conv1</c>.</summary>
    private static string? WeightPath(string name)
    {
        foreach (var suffix in (string[])[".weight", ".running_mean", ".running_var", ".bias"])
            if (name.EndsWith(suffix, StringComparison.Ordinal) && name.Length > suffix.Length && !name.Contains('/') && !name.Contains(':'))
                return IsModulePath(name[..^suffix.Length]) ? name[..^suffix.Length] : null;
        return null;
    }

    /// <summary>
    /// The module path a node's name gives. torch.onnx.export names a node by its module scopes and operator,
    /// <c>/layer1/layer1.0/downsample/downsample.0/Conv</c>, where a child of a Sequential repeats its parent's name
    /// (<c>downsample.0</c>): the path is the scopes joined, each repeated parent prefix dropped. This exporter names
    /// nodes by path (<c>layer1.0.relu</c>, auxiliary nodes <c>path/Op</c>, repeats <c>path#2</c>). Null for none.
    /// </summary>
    internal static string? NodePath(string name)
    {
        if (name.Length == 0) return null;
        if (!name.StartsWith('/'))
        {
            var end = name.IndexOfAny(['/', '#']);
            var p = end < 0 ? name : name[..end];
            return IsModulePath(p) ? p : null;
        }
        var scopes = name.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (scopes.Length < 2) return null;
        var parts = new List<string>();
        string? previous = null;
        foreach (var s in scopes[..^1])
        {
            var segment = previous is not null && s.StartsWith(previous + ".", StringComparison.Ordinal) ? s[(previous.Length + 1)..] : s;
            if (!IsModulePath(segment)) return null;
            parts.Add(segment);
            previous = s;
        }
        return string.Join('.', parts);
    }

    /// <summary>Whether <paramref name="path"/> is a dotted path of non-empty names (<c>a..b</c> and <c>.a</c> are not).</summary>
    private static bool IsModulePath(string path) => path.Length > 0 && !path.Split('.').Any(s => s.Length == 0);

    private string UniqueNode(string name)
    {
        var clean = new string(name.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '_').ToArray());
        if (clean.Length == 0 || char.IsDigit(clean[0])) clean = "n_" + clean;
        if (_nodeNames.Add(clean)) return clean;
        // The next suffix to try is remembered per name, so many nodes of one name cost one step each.
        var i = _nextNodeSuffix.GetValueOrDefault(clean, 1);
        string candidate;
        while (!_nodeNames.Add(candidate = clean + "_" + i.ToString(CultureInfo.InvariantCulture))) i++;
        _nextNodeSuffix[clean] = i + 1;
        return candidate;
    }

    private void Add(GraphNode node, string output, int rank)
    {
        _nodes.Add(node);
        _values[output] = (node.Name, rank);
    }

    // ---- operands -------------------------------------------------------------------------------------------

    private Tensor? Constant(string name) => _constants.GetValueOrDefault(name);

    private Tensor Initializer(NodeProto n, int index, string what)
    {
        if (index >= n.Input.Count || n.Input[index].Length == 0) throw Error(n.Name, $"{NodeKey(n)} has no {what}");
        return Constant(n.Input[index]) ?? throw NotModeled(n.Name, $"{NodeKey(n)}: the {what} '{n.Input[index]}' must be an initializer (a tensor computed at run time is not a module's parameter)");
    }

    private (string Node, int Rank) Value(NodeProto n, int index)
    {
        if (index >= n.Input.Count) throw Error(n.Name, $"{NodeKey(n)} has too few inputs");
        return _values.TryGetValue(n.Input[index], out var v)
            ? v
            : throw NotModeled(n.Name, $"{NodeKey(n)}: input '{n.Input[index]}' must be computed from the graph input, not a constant");
    }

    /// <summary>An operand of Add, Mul or Concat: a computed value, a scalar constant, or a tensor constant kept as a
    /// buffer of the root module and read by <c>get_attr</c>.</summary>
    private (GraphArg Arg, int Rank) Operand(NodeProto n, int index)
    {
        var name = n.Input[index];
        if (_values.TryGetValue(name, out var v)) return (GraphArg.Ref(v.Node), v.Rank);
        var t = Constant(name) ?? throw Error(n.Name, $"{NodeKey(n)}: input '{name}' is unknown");
        if (t.Count == 1 && t.Rank == 0) return (GraphArg.Const(t[0]), 0);
        var attr = UniqueNode("const_" + name);
        _rootState.Add((attr, t.DType == DType.Float32 ? t : throw NotModeled(n.Name, $"{NodeKey(n)}: constant '{name}' is not float32")));
        var node = new GraphNode(NodeOp.GetAttr, attr, attr);
        _nodes.Add(node);
        return (GraphArg.Ref(node.Name), t.Rank);
    }

    private long[] Int64Constant(NodeProto n, int index, string what)
    {
        var t = Initializer(n, index, what);
        if (t.DType != DType.Int64 || t.Rank > 1) throw NotModeled(n.Name, $"{NodeKey(n)}: {what} must be an int64 vector");
        return t.Int64.ToArray();
    }

    private static AttributeProto? Attr(NodeProto n, string name) => n.Attribute.FirstOrDefault(a => a.Name == name);
    private static long AttrInt(NodeProto n, string name, long fallback) => Attr(n, name) is { } a ? a.I : fallback;
    private static float AttrFloat(NodeProto n, string name, float fallback) => Attr(n, name) is { } a ? a.F : fallback;
    private static long[]? AttrInts(NodeProto n, string name) => Attr(n, name)?.Ints.ToArray();

    private int[] Ints(NodeProto n, string name, int count, int fallback)
    {
        var v = AttrInts(n, name);
        if (v is null) return Enumerable.Repeat(fallback, count).ToArray();
        if (v.Length != count || v.Any(x => x < 0 || x > int.MaxValue)) throw Error(n.Name, $"{NodeKey(n)}: attribute {name} must have {count} non-negative entries");
        return v.Select(x => (int)x).ToArray();
    }

    /// <summary>Symmetric pads (begin = end) per spatial axis; ONNX allows asymmetric ones, PyTorch's layers do not
    /// (except <c>padding='same'</c>, see <see cref="ConvPads"/>).</summary>
    private int[] SymmetricPads(NodeProto n, int rank)
    {
        var pads = RawPads(n, rank);
        for (var i = 0; i < rank; i++)
            if (pads[i] != pads[rank + i])
                throw NotModeled(n.Name, $"{NodeKey(n)}: asymmetric pads [{string.Join(", ", pads)}] have no PyTorch layer");
        return pads[..rank];
    }

    private int[] RawPads(NodeProto n, int rank)
    {
        var autoPad = Attr(n, "auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
        if (autoPad is not ("NOTSET" or "VALID" or ""))
            throw NotModeled(n.Name, $"{NodeKey(n)}: auto_pad {autoPad} is not supported; write explicit pads");
        return Ints(n, "pads", 2 * rank, 0);
    }

    /// <summary>A convolution's padding: symmetric amounts, or PyTorch's <c>padding='same'</c> where the pads are its uneven
    /// split (stride 1, total dilation·(kernel−1), the extra on the end).</summary>
    private ConvPadding ConvPads(NodeProto n, int rank, int[] kernel, int[] stride, int[] dilation, int[]? given = null)
    {
        var pads = given ?? RawPads(n, rank);
        if (Enumerable.Range(0, rank).All(i => pads[i] == pads[rank + i])) return ConvPadding.Explicit(pads[..rank]);
        var same = stride.All(s => s == 1) && Enumerable.Range(0, rank).All(i =>
        {
            var total = dilation[i] * (kernel[i] - 1);
            return pads[i] == total / 2 && pads[rank + i] == total - total / 2;
        });
        return same ? ConvPadding.Same : throw NotModeled(n.Name, $"{NodeKey(n)}: asymmetric pads [{string.Join(", ", pads)}] have no PyTorch layer");
    }

    /// <summary>The path for a module of node <paramref name="n"/>: from its weight's name, else from its node name, else
    /// from its operator.</summary>
    private string ModulePathFor(NodeProto n, string? weightName)
        => (weightName is null ? null : WeightPath(weightName)) ?? NodePath(n.Name) ?? n.OpType.ToLowerInvariant();

    private void CallModule(NodeProto n, string path, Module module, (string Node, int Rank) input, int rank, OnnxModuleSource? source = null)
    {
        var depth = path.Count(c => c == '.') + 1;
        if (depth > Limits.MaxModuleDepth)
            throw Error(n.Name, $"{NodeKey(n)}: its module path has {depth:N0} levels, over the limit of {Limits.MaxModuleDepth} nested modules");
        // A stateless module called again (a shared ReLU) is the same module; anything else gets its own path.
        var used = _tree.Get(path) is { } existing && existing.Equals(module) && existing.State.Count == 0 ? path : _tree.Add(path, module);
        Add(new GraphNode(NodeOp.CallModule, UniqueNode(used.Replace('.', '_')), used, [GraphArg.Ref(input.Node)]), n.Output[0], rank);
        if (!_sources.TryGetValue(used, out var calls)) _sources[used] = calls = [];
        calls.Add(source ?? new OnnxModuleSource(n, n.Input[0], []));
        if (_aliasOf.TryGetValue(n.Output[0], out var alias)) _values[alias] = _values[n.Output[0]];
    }

    /// <summary>A parameter-free operator as a module at its node's path, or as a free function when that path is a
    /// container, a weighted module or nothing (a functional call in some module's forward).</summary>
    private void Stateless(NodeProto n, Func<Module> module, string function, IEnumerable<GraphArg>? extraArgs = null)
    {
        var input = Value(n, 0);
        var path = NodePath(n.Name);
        if (path is not null && !IsContainerOrWeighted(path))
        {
            CallModule(n, path, module(), input, input.Rank);
            return;
        }
        // A functional form the engine's graphs lack (relu6, hardswish) is a module beside the container instead.
        if (GraphOps.Function(function) is null)
        {
            CallModule(n, ModulePath.Join(path ?? "", function), module(), input, input.Rank);
            return;
        }
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode(function), function, [GraphArg.Ref(input.Node), .. extraArgs ?? []]), n.Output[0], input.Rank);
    }

    /// <summary>Whether <paramref name="path"/> is a container of the modules registered so far, or the path of a weighted
    /// module or a container of one (known from the initializer names up front).</summary>
    private bool IsContainerOrWeighted(string path)
    {
        if (_tree.IsContainer(path) || _weightPaths.Contains(path)) return true;
        // In ordinal order the weight paths under path + "." follow that string directly: one binary search.
        var prefix = path + ".";
        var i = Array.BinarySearch(_sortedWeightPaths, prefix, StringComparer.Ordinal);
        if (i < 0) i = ~i;
        return i < _sortedWeightPaths.Length && _sortedWeightPaths[i].StartsWith(prefix, StringComparison.Ordinal);
    }

    /// <summary>The nodes that read <paramref name="value"/>, each once, in graph order.</summary>
    private IReadOnlyList<NodeProto> Readers(string value) => _readers.TryGetValue(value, out var list) ? list : [];

    // ---- operators ------------------------------------------------------------------------------------------

    private void Translate(NodeProto n)
    {
        if (n.Output.Count == 0 || n.Output[0].Length == 0) throw Error(n.Name, $"{NodeKey(n)} has no output");
        if (n.Domain is not ("" or "ai.onnx"))
        {
            Opaque(n);
            return;
        }
        // Each translation checks what it needs before it records anything, so a node it does not model leaves no trace.
        try { Modeled(n); }
        catch (NotModeledException) { Opaque(n); }
    }

    /// <summary>A node as the modules and graph operations the engine and the rules understand, or
    /// <see cref="NotModeledException"/> when it has none (then it is carried verbatim, see <see cref="Opaque"/>).</summary>
    private void Modeled(NodeProto n)
    {
        switch (n.OpType)
        {
            case "Pad": Pad(n); break;
            case "Conv": Conv(n, transposed: false); break;
            case "ConvTranspose": Conv(n, transposed: true); break;
            case "BatchNormalization": BatchNormalization(n); break;
            case "Gemm": Gemm(n); break;
            case "MatMul": MatMul(n); break;
            case "Relu": Stateless(n, () => Activation.Create(ActivationKind.ReLU), "relu"); break;
            case "HardSwish": Stateless(n, () => Activation.Create(ActivationKind.Hardswish), "hardswish"); break;
            case "HardSigmoid":
                if (Math.Abs(AttrFloat(n, "alpha", 0.2f) - 1f / 6f) > 1e-6 || AttrFloat(n, "beta", 0.5f) != 0.5f)
                    throw NotModeled(n.Name, $"{NodeKey(n)}: only alpha = 1/6, beta = 1/2 (PyTorch's Hardsigmoid) is supported");
                Stateless(n, () => Activation.Create(ActivationKind.Hardsigmoid), "hardsigmoid");
                break;
            case "Clip": Clip(n); break;
            case "Sigmoid": Sigmoid(n); break;
            case "MaxPool":
            case "AveragePool": Pool(n); break;
            case "GlobalAveragePool":
                if (Value(n, 0).Rank != 4) throw NotModeled(n.Name, $"{NodeKey(n)}: only 2-d global pooling is supported");
                Stateless(n, () => AdaptiveAvgPool2d.Create([1]), "adaptive_avg_pool2d", [GraphArg.Const(1L)]);
                break;
            case "Flatten":
            {
                var axis = AttrInt(n, "axis", 1);
                if (axis != 1) throw NotModeled(n.Name, $"{NodeKey(n)}: Flatten with axis {axis} has no PyTorch flatten (axis 1 has)");
                Stateless(n, () => Layers.Flatten.Create(), "flatten", [GraphArg.Const(1L)]);
                _values[n.Output[0]] = (_values[n.Output[0]].Node, 2);
                break;
            }
            case "Add":
            case "Mul": Binary(n); break;
            case "Concat": Concat(n); break;
            case "Reshape": Reshape(n); break;
            case "Squeeze":
            case "Unsqueeze": Axes(n); break;
            case "Identity":
            case "Dropout": Alias(n); break;
            case "Constant": ConstantNode(n); break;
            case "Sub":
            case "Div": Binary(n); break;
            case "Softmax":
            {
                var x = Value(n, 0);
                Add(new GraphNode(NodeOp.CallFunction, UniqueNode("softmax"), "softmax", [GraphArg.Ref(x.Node), GraphArg.Const(AttrInt(n, "axis", -1))]), n.Output[0], x.Rank);
                break;
            }
            case "Transpose": Permute(n); break;
            case "ReduceMean": ReduceMean(n); break;
            default:
                throw NotModeled(n.Name, $"{NodeKey(n)}: operator {n.OpType} has no module or graph operation here");
        }
    }

    private void Alias(NodeProto n)
    {
        if (n.OpType == "Dropout" && n.Output.Count > 1 && n.Output[1].Length > 0 && _uses.ContainsKey(n.Output[1]))
            throw NotModeled(n.Name, $"{NodeKey(n)}: its mask output is used, which an inference model does not have");
        var input = n.Input.Count > 0 ? n.Input[0] : throw Error(n.Name, $"{NodeKey(n)} has no input");
        if (_constants.TryGetValue(input, out var t)) _constants[n.Output[0]] = t;
        else _values[n.Output[0]] = Value(n, 0);
    }

    private void ConstantNode(NodeProto n)
    {
        var a = n.Attribute.FirstOrDefault() ?? throw Error(n.Name, $"{NodeKey(n)} has no value");
        _constants[n.Output[0]] = a.Name switch
        {
            // A Constant of another element type (swin's Bool attention masks) is carried verbatim with its readers.
            "value" when a.T is not null => OnnxFileReader.IsDecodable(a.T) ? _file.Decode(a.T, n.Name)
                : throw NotModeled(n.Name, $"{NodeKey(n)}: a constant of element type {(TensorProto.Types.DataType)a.T.DataType}"),
            "value_float" => Tensor.FromFloat32([a.F]),
            "value_floats" => Tensor.FromFloat32(a.Floats.ToArray(), a.Floats.Count),
            "value_int" => Tensor.FromInt64([a.I]),
            "value_ints" => Tensor.FromInt64(a.Ints.ToArray(), a.Ints.Count),
            _ => throw NotModeled(n.Name, $"{NodeKey(n)}: constant attribute {a.Name} is not supported"),
        };
    }

    private void Conv(NodeProto n, bool transposed)
    {
        var x = Value(n, 0);
        var w = Initializer(n, 1, "weight");
        var b = n.Input.Count > 2 && n.Input[2].Length > 0 ? Initializer(n, 2, "bias") : null;
        var rank = w.Rank - 2;
        if (rank is < 1 or > 3 || w.DType != DType.Float32) throw NotModeled(n.Name, $"{NodeKey(n)}: weight of shape {Tensor.ShapeString(w.Shape)} is not a 1-, 2- or 3-d convolution's");
        if (x.Rank >= 0 && x.Rank != rank + 2) throw NotModeled(n.Name, $"{NodeKey(n)}: input of rank {x.Rank} for a {rank}-d convolution");
        var group = AttrInt(n, "group", 1);
        if (group is < 1 or > int.MaxValue) throw Error(n.Name, $"{NodeKey(n)}: group {group} is not positive");
        var g = (int)group;
        var kernel = w.Shape[2..].ToArray();
        if (AttrInts(n, "kernel_shape") is { } ks && !ks.SequenceEqual(kernel.Select(k => (long)k)))
            throw Error(n.Name, $"{NodeKey(n)}: kernel_shape [{string.Join(", ", ks)}] differs from the weight's {Tensor.ShapeString(w.Shape)}");
        var stride = Ints(n, "strides", rank, 1);
        var dilation = Ints(n, "dilations", rank, 1);
        int[] outputPadding = new int[rank];
        var paddingMode = PaddingMode.Zeros;
        ConvPadding padding;
        if (!transposed) padding = ConvPads(n, rank, kernel, stride, dilation);
        else
        {
            // This exporter writes PyTorch's output_padding as less padding at the end; read it back.
            if (AttrInts(n, "output_shape") is not null) throw NotModeled(n.Name, $"{NodeKey(n)}: output_shape is not supported; write pads and output_padding");
            var pads = Ints(n, "pads", 2 * rank, 0);
            var given = Ints(n, "output_padding", rank, 0);
            padding = ConvPadding.Explicit(pads[..rank]);
            for (var i = 0; i < rank; i++)
            {
                if (pads[rank + i] > pads[i]) throw NotModeled(n.Name, $"{NodeKey(n)}: more end than begin padding has no PyTorch layer");
                outputPadding[i] = given[i] + pads[i] - pads[rank + i];
            }
        }
        if (_padBefore.TryGetValue(n, out var before))
        {
            if (padding.Kind != PaddingKind.Explicit || padding.Amounts.Any(p => p != 0) || before.Pads.Length != 2 * rank)
                throw NotModeled(n.Name, $"{NodeKey(n)}: a Pad before a padding convolution has no PyTorch layer");
            (paddingMode, padding) = (before.Mode, ConvPads(n, rank, kernel, stride, dilation, before.Pads));
        }
        // This exporter writes an output_padding beyond the padding as zeros padded on afterwards (the bias added after);
        // taken last, as it marks that Pad as read.
        if (transposed && b is null && TrailingZeroPad(n, rank + 2) is { } extra)
            for (var i = 0; i < rank; i++) outputPadding[i] += extra[i];
        var outC = transposed ? w.Shape[1] * g : w.Shape[0];
        var inC = transposed ? w.Shape[0] : w.Shape[1] * g;
        var path = ModulePathFor(n, n.Input[1]);
        Conv conv;
        try
        {
            conv = Layers.Conv.Create(rank, inC, outC, kernel, stride, padding, dilation, g, b is not null,
                paddingMode, transposed: transposed, outputPadding: outputPadding, weight: w, biasTensor: b);
        }
        catch (ArgumentException e) { throw Error(n.Name, $"{NodeKey(n)}: {e.Message}"); }
        var trailing = _aliasOf.ContainsKey(n.Output[0]) ? Readers(n.Output[0])[0] : null;
        CallModule(n, path, conv, x, rank + 2, new OnnxModuleSource(n, n.Input[0], trailing is null ? [] : [trailing]));
    }

    /// <summary>
    /// A Pad feeding one unpadded Conv is that convolution's <c>padding_mode</c> (PyTorch pads with F.pad in that mode and
    /// convolves without padding; the exporter writes it so): reflect → reflect, edge → replicate, constant 0 → zeros.
    /// </summary>
    private void Pad(NodeProto n)
    {
        var x = Value(n, 0);
        var mode = Attr(n, "mode")?.S.ToStringUtf8() ?? "constant";
        var pads = Int64Constant(n, 1, "pads");
        var consumers = Readers(n.Output[0]);
        var rank = x.Rank - 2;
        // torch 1.13 writes an all-zero Pad before the AveragePool of an AvgPool2d(count_include_pad=True): the identity.
        if (pads.All(p => p == 0))
        {
            _values[n.Output[0]] = x;
            return;
        }
        // ... and F.avg_pool2d(x, k, s, padding) as a zero Pad then an AveragePool without pads: PyTorch's padded average.
        var intoPool = consumers.Count == 1 && consumers[0].OpType == "AveragePool" && mode == "constant";
        if (consumers.Count != 1 || !(consumers[0].OpType == "Conv" || intoPool) || _uses.GetValueOrDefault(n.Output[0]) != 1 || rank < 1 || pads.Length != 2 * x.Rank)
            throw NotModeled(n.Name, $"{NodeKey(n)}: a Pad that pads something is read only as the padding of the one Conv or AveragePool it feeds");
        if (n.Input.Count > 2 && n.Input[2].Length > 0 && Constant(n.Input[2]) is { } v && v.Count == 1 && v[0] != 0)
            throw NotModeled(n.Name, $"{NodeKey(n)}: padding with {v[0]} instead of zeros has no PyTorch convolution");
        var spatial = new int[2 * rank];
        for (var i = 0; i < x.Rank; i++)
        {
            var (begin, end) = (pads[i], pads[x.Rank + i]);
            if (i < 2 ? begin != 0 || end != 0 : begin < 0 || end < 0 || begin > int.MaxValue || end > int.MaxValue)
                throw NotModeled(n.Name, $"{NodeKey(n)}: pads [{string.Join(", ", pads)}] pad the batch or channel axis, or are negative");
            if (i >= 2) (spatial[i - 2], spatial[rank + i - 2]) = ((int)begin, (int)end);
        }
        var paddingMode = mode switch
        {
            "reflect" => PaddingMode.Reflect,
            "edge" => PaddingMode.Replicate,
            "constant" => PaddingMode.Zeros,
            _ => throw NotModeled(n.Name, $"{NodeKey(n)}: Pad mode '{mode}' has no PyTorch padding_mode"),
        };
        _padBefore[consumers[0]] = (paddingMode, spatial);
        _values[n.Output[0]] = x;
    }

    /// <summary>The end amounts of a constant-zero Pad that is the only reader of <paramref name="n"/>'s output and pads
    /// nothing else (then its output becomes an alias of the convolution's), or null.</summary>
    private int[]? TrailingZeroPad(NodeProto n, int rank)
    {
        var readers = Readers(n.Output[0]);
        if (readers is not [{ OpType: "Pad" } pad] || _uses.GetValueOrDefault(n.Output[0]) != 1) return null;
        if ((Attr(pad, "mode")?.S.ToStringUtf8() ?? "constant") != "constant") return null;
        if (pad.Input.Count > 2 && pad.Input[2].Length > 0 && (Constant(pad.Input[2]) is not { Count: 1 } v || v[0] != 0)) return null;
        if (pad.Input.Count < 2 || Constant(pad.Input[1]) is not { DType: DType.Int64 } p || p.Count != 2 * rank) return null;
        var pads = p.Int64.ToArray();
        if (pads[..(rank + 2)].Any(a => a != 0) || pads.Any(a => a < 0 || a > int.MaxValue)) return null;
        _skipped.Add(pad);
        _aliasOf[n.Output[0]] = pad.Output[0];
        return [.. pads[(rank + 2)..].Select(a => (int)a)];
    }

    private void BatchNormalization(NodeProto n)
    {
        var x = Value(n, 0);
        if (AttrInt(n, "training_mode", 0) != 0) throw NotModeled(n.Name, $"{NodeKey(n)}: training_mode=1 computes batch statistics; only inference BatchNormalization is read");
        if (n.Output.Skip(1).Any(o => o.Length > 0 && _uses.ContainsKey(o))) throw NotModeled(n.Name, $"{NodeKey(n)}: its running-statistics outputs are used");
        var scale = Initializer(n, 1, "scale");
        var rank = x.Rank switch { 2 or 3 => 1, 4 => 2, 5 => 3, _ => throw NotModeled(n.Name, $"{NodeKey(n)}: input of rank {x.Rank}") };
        // Stored as float; the shortest decimal that rounds to it is PyTorch's value (1e-5, not 9.99999974e-06).
        var eps = double.Parse(AttrFloat(n, "epsilon", 1e-5f).ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        var momentum = Math.Round(1 - (double)AttrFloat(n, "momentum", 0.9f), 6);
        BatchNorm bn;
        try
        {
            bn = Layers.BatchNorm.Create(rank, scale.Count, eps, momentum, weight: scale, bias: Initializer(n, 2, "bias"),
                runningMean: Initializer(n, 3, "running mean"), runningVar: Initializer(n, 4, "running variance"));
        }
        catch (ArgumentException e) { throw Error(n.Name, $"{NodeKey(n)}: {e.Message}"); }
        CallModule(n, ModulePathFor(n, n.Input[1]), bn, x, x.Rank);
    }

    private void Gemm(NodeProto n)
    {
        var x = Value(n, 0);
        if (x.Rank is not (2 or -1)) throw NotModeled(n.Name, $"{NodeKey(n)}: input of rank {x.Rank}; Gemm takes matrices");
        if (AttrFloat(n, "alpha", 1f) != 1f || AttrFloat(n, "beta", 1f) != 1f || AttrInt(n, "transA", 0) != 0)
            throw NotModeled(n.Name, $"{NodeKey(n)}: only alpha = beta = 1 and transA = 0 (a Linear layer) are supported");
        var b = Initializer(n, 1, "weight");
        if (b.Rank != 2 || b.DType != DType.Float32) throw NotModeled(n.Name, $"{NodeKey(n)}: weight of shape {Tensor.ShapeString(b.Shape)} is not a matrix");
        var w = AttrInt(n, "transB", 0) == 1 ? b : Matrices.Transpose(b);
        Tensor? bias = null;
        if (n.Input.Count > 2 && n.Input[2].Length > 0)
        {
            bias = Initializer(n, 2, "bias");
            if (bias.Count != w.Shape[0]) throw NotModeled(n.Name, $"{NodeKey(n)}: bias of shape {Tensor.ShapeString(bias.Shape)} for {w.Shape[0]} outputs");
            bias = bias.Reshape(w.Shape[0]);
        }
        CallModule(n, ModulePathFor(n, n.Input[1]), Layers.Linear.Create(w.Shape[1], w.Shape[0], bias is not null, w, bias), x, 2);
    }

    private void MatMul(NodeProto n)
    {
        var x = Value(n, 0);
        if (n.Input.Count == 2 && _values.TryGetValue(n.Input[1], out var other))
        {
            // A product of two computed tensors (attention's q·kᵀ): torch.matmul.
            Add(new GraphNode(NodeOp.CallFunction, UniqueNode("matmul"), "matmul", [GraphArg.Ref(x.Node), GraphArg.Ref(other.Node)]),
                n.Output[0], x.Rank < 0 || other.Rank < 0 ? -1 : Math.Max(x.Rank, other.Rank));
            return;
        }
        var b = Initializer(n, 1, "weight");
        if (b.Rank != 2 || b.DType != DType.Float32) throw NotModeled(n.Name, $"{NodeKey(n)}: only a product with a weight matrix (a Linear without bias) is supported");
        var w = Matrices.Transpose(b);
        CallModule(n, ModulePathFor(n, n.Input[1]), Layers.Linear.Create(w.Shape[1], w.Shape[0], false, w), x, x.Rank);
    }

    private void Clip(NodeProto n)
    {
        float? Bound(int index) => index < n.Input.Count && n.Input[index].Length > 0
            ? Constant(n.Input[index]) is { Count: 1, DType: DType.Float32 } t ? t.Float32[0] : throw NotModeled(n.Name, $"{NodeKey(n)}: its bounds must be scalar constants")
            : null;
        var (min, max) = (Bound(1), Bound(2));
        if (min == 0 && max == 6) Stateless(n, () => Activation.Create(ActivationKind.ReLU6), "relu6");
        else if (min == 0 && max is null) Stateless(n, () => Activation.Create(ActivationKind.ReLU), "relu");
        else throw NotModeled(n.Name, $"{NodeKey(n)}: Clip({min}, {max}) is neither ReLU6 (0, 6) nor ReLU (0, none)");
    }

    /// <summary>Sigmoid followed by a Mul of its input and itself is PyTorch's SiLU (as torch.onnx.export writes
    /// nn.SiLU); any other Sigmoid is <c>torch.sigmoid</c>.</summary>
    private void Sigmoid(NodeProto n)
    {
        var x = n.Input[0];
        var s = n.Output[0];
        var input = Value(n, 0);
        var mul = Readers(s).FirstOrDefault(m => m.OpType == "Mul" && m.Input.Count == 2
                                                  && (m.Input[0] == x && m.Input[1] == s || m.Input[0] == s && m.Input[1] == x));
        var path = mul is null ? null : NodePath(mul.Name) ?? NodePath(n.Name);
        if (mul is not null && _uses.GetValueOrDefault(s) == 1 && path is not null && !IsContainerOrWeighted(path))
        {
            _skipped.Add(mul);
            CallModule(mul, path, Activation.Create(ActivationKind.SiLU), input, input.Rank, new OnnxModuleSource(mul, x, [n]));
            return;
        }
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode("sigmoid"), "sigmoid", [GraphArg.Ref(input.Node)]), s, input.Rank);
    }

    private void Pool(NodeProto n)
    {
        var x = Value(n, 0);
        if (x.Rank is not (4 or -1)) throw NotModeled(n.Name, $"{NodeKey(n)}: only 2-d pooling is supported");
        if (n.Output.Count > 1 && n.Output[1].Length > 0 && _uses.ContainsKey(n.Output[1])) throw NotModeled(n.Name, $"{NodeKey(n)}: its indices output is used");
        // Range-checked like every other integer attribute: a kernel of 2^31 is a refusal, not an OverflowException.
        var kernel = AttrInts(n, "kernel_shape") is { Length: 2 } ? Ints(n, "kernel_shape", 2, 0) : throw NotModeled(n.Name, $"{NodeKey(n)} needs a 2-d kernel_shape");
        var stride = Ints(n, "strides", 2, 1);
        var pads = SymmetricPads(n, 2);
        var countPad = AttrInt(n, "count_include_pad", 0) != 0;
        if (_padBefore.TryGetValue(n, out var before))
        {
            // A zero Pad feeding this AveragePool (see Pad): its amounts are PyTorch's padding, and its zeros are counted.
            if (pads.Any(p => p != 0) || before.Pads[0] != before.Pads[2] || before.Pads[1] != before.Pads[3])
                throw NotModeled(n.Name, $"{NodeKey(n)}: a Pad of [{string.Join(", ", before.Pads)}] before an AveragePool with pads of its own, or asymmetric, has no PyTorch layer");
            pads = before.Pads[..2];
            countPad = true;
        }
        // Without padding the flag changes nothing: take PyTorch's default, as an AvgPool2d(2, 2) has it.
        if (pads.All(p => p == 0)) countPad = true;
        var ceil = AttrInt(n, "ceil_mode", 0) != 0;
        Module Make()
        {
            try
            {
                return n.OpType == "MaxPool"
                    ? MaxPool2d.Create(kernel, stride, pads, Ints(n, "dilations", 2, 1), ceil)
                    : AvgPool2d.Create(kernel, stride, pads, ceil, countPad);
            }
            catch (ArgumentException e) { throw Error(n.Name, $"{NodeKey(n)}: {e.Message}"); }
        }
        var path = NodePath(n.Name) ?? n.OpType.ToLowerInvariant();
        // Pooling has no functional form in the graphs the engine runs (only adaptive_avg_pool2d); it is always a module.
        CallModule(n, IsContainerOrWeighted(path) ? path + "_" + n.OpType.ToLowerInvariant() : path, Make(), x, 4);
    }

    private void Binary(NodeProto n)
    {
        if (n.Input.Count != 2) throw Error(n.Name, $"{NodeKey(n)} needs two inputs");
        var (a, ra) = Operand(n, 0);
        var (b, rb) = Operand(n, 1);
        if (a is ConstArg && b is ConstArg) throw NotModeled(n.Name, $"{NodeKey(n)}: both operands are constants");
        var function = n.OpType.ToLowerInvariant();   // add, sub, mul, div: torch's functions of the same meaning
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode(function), function, [a, b]), n.Output[0], ra < 0 || rb < 0 ? -1 : Math.Max(ra, rb));
    }

    private void Concat(NodeProto n)
    {
        var parts = Enumerable.Range(0, n.Input.Count).Select(i => Operand(n, i)).ToArray();
        if (parts.Length == 0 || parts.Any(p => p.Arg is ConstArg)) throw NotModeled(n.Name, $"{NodeKey(n)}: Concat takes tensors");
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode("cat"), "cat", [GraphArg.List([.. parts.Select(p => p.Arg)]), GraphArg.Const(AttrInt(n, "axis", 0))]),
            n.Output[0], parts[0].Rank);
    }

    private void Reshape(NodeProto n)
    {
        var x = Value(n, 0);
        var shape = Int64Constant(n, 1, "shape");
        if (shape.Contains(0) && AttrInt(n, "allowzero", 0) == 0)
            throw NotModeled(n.Name, $"{NodeKey(n)}: a 0 in the shape ({string.Join(", ", shape)}) copies an input size, which PyTorch's reshape has no form for");
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode("reshape"), "reshape", [GraphArg.Ref(x.Node), GraphArg.List([.. shape.Select(d => GraphArg.Const(d))])]),
            n.Output[0], shape.Length);
    }

    private void Axes(NodeProto n)
    {
        if (n.Input.Count > 1 && Constant(n.Input[0]) is { } c)
        {
            // A constant reshaped (a bias [C] as [C, 1, 1] to broadcast), folded here.
            var axesOf = Int64Constant(n, 1, "axes");
            var dims = c.Shape.ToArray().ToList();
            if (n.OpType == "Unsqueeze")
                foreach (var a in axesOf.Select(a => a < 0 ? a + dims.Count + axesOf.Length : a).Order()) dims.Insert((int)Math.Clamp(a, 0, dims.Count), 1);
            else
                foreach (var a in axesOf.Select(a => a < 0 ? a + dims.Count : a).OrderDescending())
                    if (a >= 0 && a < dims.Count && dims[(int)a] == 1) dims.RemoveAt((int)a);
            _constants[n.Output[0]] = c.Reshape([.. dims]);
            return;
        }
        var x = Value(n, 0);
        var squeeze = n.OpType == "Squeeze";
        long[]? axes = n.Input.Count > 1 && n.Input[1].Length > 0 ? Int64Constant(n, 1, "axes") : null;
        if (axes is null)
        {
            if (!squeeze) throw NotModeled(n.Name, $"{NodeKey(n)} needs axes");
            // Without axes every size-1 dimension goes; the rank afterwards is not known without sizes.
            Add(new GraphNode(NodeOp.CallMethod, UniqueNode("squeeze"), "squeeze", [GraphArg.Ref(x.Node)]), n.Output[0], -1);
            return;
        }
        var rank = x.Rank;
        var outRank = squeeze ? rank - axes.Length : rank + axes.Length;
        var normalized = axes.Select(a => a < 0 ? a + (squeeze ? rank : outRank) : a).ToArray();
        // One dimension at a time: squeeze from the last, unsqueeze from the first, so that the positions stay right.
        var order = squeeze ? normalized.OrderDescending() : normalized.Order();
        var current = x.Node;
        foreach (var axis in order)
        {
            var node = new GraphNode(NodeOp.CallMethod, UniqueNode(squeeze ? "squeeze" : "unsqueeze"), squeeze ? "squeeze" : "unsqueeze",
                [GraphArg.Ref(current), GraphArg.Const(axis)]);
            _nodes.Add(node);
            current = node.Name;
        }
        _values[n.Output[0]] = (current, outRank);
    }

    /// <summary>A Transpose of a computed tensor: <c>torch.permute</c> (ONNX's default reverses the axes).</summary>
    private void Permute(NodeProto n)
    {
        if (n.Input.Count == 1 && Constant(n.Input[0]) is { Rank: 2, DType: DType.Float32 } m && AttrInts(n, "perm") is null or [1, 0])
        {
            // A transposed weight (Linear on inputs that are not matrices is written as x · Wᵀ), folded here.
            _constants[n.Output[0]] = Matrices.Transpose(m);
            return;
        }
        var x = Value(n, 0);
        var perm = AttrInts(n, "perm");
        if (perm is null)
        {
            if (x.Rank < 0) throw NotModeled(n.Name, $"{NodeKey(n)}: a Transpose without perm of a tensor of unknown rank");
            perm = [.. Enumerable.Range(0, x.Rank).Reverse().Select(i => (long)i)];
        }
        if (x.Rank >= 0 && (perm.Length != x.Rank || perm.Order().Where((p, i) => p != i).Any()))
            throw Error(n.Name, $"{NodeKey(n)}: perm [{string.Join(", ", perm)}] is not a permutation of {x.Rank} axes");
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode("permute"), "permute", [GraphArg.Ref(x.Node), GraphArg.List([.. perm.Select(p => GraphArg.Const(p))])]),
            n.Output[0], perm.Length);
    }

    /// <summary>ReduceMean with its axes as an attribute (opsets 13 to 17): <c>torch.mean(x, dims, keepdim)</c>.</summary>
    private void ReduceMean(NodeProto n)
    {
        var x = Value(n, 0);
        if (n.Input.Count > 1 || x.Rank < 0) throw NotModeled(n.Name, $"{NodeKey(n)}: axes given as an input, or a tensor of unknown rank");
        var keep = AttrInt(n, "keepdims", 1) != 0;
        var axes = AttrInts(n, "axes") ?? [.. Enumerable.Range(0, x.Rank).Select(i => (long)i)];
        if (axes.Length == 0 || axes.Any(a => a < -x.Rank || a >= x.Rank) || axes.Select(a => a < 0 ? a + x.Rank : a).Distinct().Count() != axes.Length)
            throw Error(n.Name, $"{NodeKey(n)}: axes [{string.Join(", ", axes)}] are not distinct axes of a rank-{x.Rank} tensor");
        Add(new GraphNode(NodeOp.CallFunction, UniqueNode("mean"), "mean", [GraphArg.Ref(x.Node), GraphArg.List([.. axes.Select(a => GraphArg.Const(a))]), GraphArg.Const(keep)]),
            n.Output[0], keep ? x.Rank : x.Rank - axes.Length);
    }

    /// <summary>
    /// A node carried verbatim: an opaque call <c>onnx::Op</c> (<c>onnx::domain::Op</c> outside the default domain) of its
    /// computed inputs (constants by name), one <c>getitem</c> per further output. The engine refuses it by that name;
    /// fusion treats it as a reader of its inputs; the write-back keeps the file's node.
    /// </summary>
    private void Opaque(NodeProto n)
    {
        var op = n.Domain is "" or "ai.onnx" ? n.OpType : n.Domain + "::" + n.OpType;
        _carried.Add(op);
        var args = n.Input.Select(i => i.Length == 0 ? GraphArg.Const(null) : _values.TryGetValue(i, out var v) ? GraphArg.Ref(v.Node) : GraphArg.Const(i));
        var node = new GraphNode(NodeOp.CallFunction, UniqueNode(NodePath(n.Name)?.Replace('.', '_') + "_" + n.OpType), "onnx::" + op, [.. args]);
        var rank = OpaqueRank(n);
        if (n.Output.Count == 1)
        {
            Add(node, n.Output[0], rank);
            return;
        }
        _nodes.Add(node);
        for (var i = 0; i < n.Output.Count; i++)
            if (n.Output[i].Length > 0)
                Add(new GraphNode(NodeOp.CallFunction, UniqueNode(node.Name + "_" + i.ToString(CultureInfo.InvariantCulture)), "getitem",
                    [GraphArg.Ref(node.Name), GraphArg.Const((long)i)]), n.Output[i], n.OpType == "Split" ? rank : -1);
    }

    private int RankOf(string value)
        => value.Length == 0 ? -1 : _values.TryGetValue(value, out var v) ? v.Rank : Constant(value)?.Rank ?? -1;

    /// <summary>The rank of a carried node's (first) output where ONNX's operator definition gives it from its inputs'
    /// (so that modeled layers after it, a Conv or a Gemm, still know theirs); -1 when unknown.</summary>
    private int OpaqueRank(NodeProto n)
    {
        var ranks = n.Input.Select(RankOf).ToArray();
        var first = ranks.Length > 0 ? ranks[0] : -1;
        switch (n.OpType)
        {
            case "Shape": return 1;
            case "Size": return 0;
            case "Flatten": return 2;
            case "Reshape": return n.Input.Count > 1 && Constant(n.Input[1]) is { DType: DType.Int64, Rank: 1 } shape ? shape.Count : -1;
            case "Gather": return ranks.Length == 2 && ranks.All(r => r >= 0) ? ranks[0] + ranks[1] - 1 : -1;
            case "ReduceMean" or "ReduceSum" or "ReduceMax" or "ReduceMin" or "ReduceProd" or "ReduceL2":
                return AttrInt(n, "keepdims", 1) != 0 ? first : -1;
            case "Add" or "Sub" or "Mul" or "Div" or "Pow" or "Max" or "Min" or "Mod" or "Where" or "Equal" or "Less" or "Greater"
                or "LessOrEqual" or "GreaterOrEqual" or "And" or "Or" or "Xor" or "PRelu" or "Sum" or "Mean":
                return ranks.Length > 0 && ranks.All(r => r >= 0) ? ranks.Max() : -1;
            case "Erf" or "Sigmoid" or "Tanh" or "Sqrt" or "Exp" or "Log" or "Abs" or "Neg" or "Reciprocal" or "Cast" or "Softmax"
                or "LogSoftmax" or "Softplus" or "Relu" or "LeakyRelu" or "Elu" or "Selu" or "Gelu" or "HardSigmoid" or "HardSwish"
                or "Clip" or "Transpose" or "Slice" or "Split" or "Concat" or "Pad" or "Tile" or "LayerNormalization"
                or "GroupNormalization" or "InstanceNormalization" or "Dropout" or "Identity" or "Floor" or "Ceil" or "Round"
                or "Not" or "IsNaN" or "IsInf" or "Sign" or "Mish" or "BatchNormalization" or "Conv" or "ConvTranspose" or "MaxPool"
                or "AveragePool" or "GlobalAveragePool" or "GlobalMaxPool" or "Resize" or "DepthToSpace" or "SpaceToDepth"
                or "QuantizeLinear" or "DequantizeLinear" or "CumSum" or "Trilu":
                return first;
            default: return -1;
        }
    }

    /// <summary>What <see cref="Modeled"/> throws for a node it has no module or graph operation for.</summary>
    private sealed class NotModeledException(string message) : Exception(message);

    private static NotModeledException NotModeled(string? key, string problem) => new(key is null ? problem : key + ": " + problem);
}
