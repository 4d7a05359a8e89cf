using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Onnx.Export;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Onnx.WriteBack;

/// <summary>
/// Writes a model imported from an ONNX file, after fusion, back into that file's own graph, changing only what fusion
/// changed: a module replaced by an <c>Identity</c> loses its node (a BatchNormalization folded away), a head whose weights
/// changed gets them in its node's initializers (under the same names when nothing else reads them), and a fused group's
/// activation is written right after its head. Every other node, attribute, opset, metadata entry and initializer (of any
/// element type) is the file's, so operators the importer carries verbatim come back unchanged, and a model the DSL does
/// not model node by node still fuses. Written rather than re-exported because a fresh export needs every operator's
/// shape and form, which a carried operator does not give.
/// </summary>
internal sealed class OnnxWriteBack
{
    private readonly OnnxSource _src;
    private readonly OnnxGraphWriter _writer = new();   // the new nodes and initializers, named apart from the file's
    private readonly OnnxExporter _exporter;
    private readonly Dictionary<string, string> _alias = new(StringComparer.Ordinal);   // a removed node's output → what it passed on
    private readonly HashSet<NodeProto> _removed = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<NodeProto, List<NodeProto>> _replaced = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, Tensor> _tensors = new(StringComparer.Ordinal);   // the file's decoded initializers, some replaced
    private readonly Dictionary<string, int> _reads = new(StringComparer.Ordinal);   // how often the file reads each value

    private OnnxWriteBack(OnnxSource src)
    {
        _src = src;
        _exporter = new OnnxExporter(_writer, OnnxExportOptions.Default);
        foreach (var (name, tensor) in src.Initializers) _tensors[name] = tensor;
        var graph = src.Proto.Graph;
        foreach (var n in graph.Node)
        {
            _writer.Reserve(n.Name);
            foreach (var o in n.Output) _writer.Reserve(o);
            foreach (var i in n.Input) _reads[i] = _reads.GetValueOrDefault(i) + 1;
        }
        foreach (var v in graph.Input.Concat(graph.Output).Concat(graph.ValueInfo)) _writer.Reserve(v.Name);
        foreach (var v in graph.Output) _reads[v.Name] = _reads.GetValueOrDefault(v.Name) + 1;
        foreach (var t in graph.Initializer) _writer.Reserve(t.Name);
        foreach (var name in _tensors.Keys) _writer.Reserve(name);
    }

    /// <summary>The file's model with <paramref name="model"/>'s changes, the initializers to stream after it, and how many
    /// module paths changed.</summary>
    /// <exception cref="OnnxExportException">The model's forward graph is not the file's, or a module changed in a way a
    /// node of the file cannot express (the message names the module path).</exception>
    public static (ModelProto Proto, IReadOnlyList<KeyValuePair<string, Tensor>> Initializers, int Changed) Build(
        OnnxSource src, Module model, bool dynamicBatch)
    {
        if (src.Original is not UserModule { Forward: { } before } || model is not UserModule { Forward: { } after } || !before.Equals(after))
            throw new OnnxExportException("", model.TypeName,
                "its forward graph is not the one read from the ONNX file, and the write-back keeps the file's graph and changes only the modules fusion replaced; export it afresh instead (OnnxModel.Write with an input shape)");
        var w = new OnnxWriteBack(src);
        var changed = 0;
        foreach (var (path, calls) in src.Modules)
            if (w.Apply(path, calls, model)) changed++;
        return (w.Assemble(dynamicBatch, out var initializers), initializers, changed);
    }

    private OnnxExportException Refuse(string path, Module m, string problem) => new(path, m.TypeName, problem);

    /// <summary>Applies the change, if any, of the module at <paramref name="path"/>; true when it changed.</summary>
    private bool Apply(string path, List<OnnxModuleSource> calls, Module model)
    {
        var before = ModulePath.Get(_src.Original, path);
        if (!ModulePath.TryGet(model, path, out var after)) throw Refuse(path, before, "is missing from the model, whose graph calls it");
        // A module changed only in its training flag (--eval) computes the same inference graph.
        if (ReferenceEquals(before, after) || before.Equals(after) || before.WithTraining(false).Equals(after.WithTraining(false))) return false;
        if (after is Identity)
        {
            // The model no longer computes anything here (fusion folded it into the head before it): the node goes, and its
            // readers read what it read.
            foreach (var call in calls)
            {
                _removed.Add(call.Node);
                foreach (var a in call.Absorbed) _removed.Add(a);
                _alias[call.Node.Output[0]] = call.DataInput;
            }
            return true;
        }
        var (head, activation) = Decompose(path, after, calls[0].Node.OpType == "Gemm" ? 2 : -1);
        if (!SameLayer(before, head))
            throw Refuse(path, after, $"replaces the file's {before.TypeName} with a {head.TypeName} of another configuration, which the write-back into the source file does not express; export it afresh instead");
        foreach (var call in calls) Patch(path, call, head, activation);
        return true;
    }

    /// <summary>What the changed module computes: a head layer, then an activation or none.</summary>
    private static (Module Head, ActivationKind? Activation) Decompose(string path, Module m, int inputRank)
    {
        if (m is not FusedModule f) return (m, null);
        var chain = FusedChain.Of(f) ?? throw new OnnxExportException(path, m.TypeName, "is a fused group that is not a head, a BatchNorm and an activation in order (or a child has hooks), which has no node form");
        var head = chain.BatchNorm is null ? chain.Head.Module
            : OnnxExporter.FoldedHead(f, chain, path, inputRank)
              ?? throw new OnnxExportException(path, m.TypeName, "its BatchNorm does not fold into its head here (sizes differ, or a Linear not read as a Gemm of a matrix)");
        return (head, chain.ActivationModule?.Kind);
    }

    /// <summary>Whether <paramref name="after"/> is the same layer as <paramref name="before"/> up to its tensors (and a bias
    /// that folding adds).</summary>
    private static bool SameLayer(Module before, Module after) => (before, after) switch
    {
        (Conv a, Conv b) => a.Rank == b.Rank && a.Transposed == b.Transposed && a.InChannels == b.InChannels && a.OutChannels == b.OutChannels
                            && a.KernelSize.SequenceEqual(b.KernelSize) && a.Stride.SequenceEqual(b.Stride) && a.Padding.Equals(b.Padding)
                            && a.Dilation.SequenceEqual(b.Dilation) && a.Groups == b.Groups && a.PaddingMode == b.PaddingMode
                            && a.OutputPadding.SequenceEqual(b.OutputPadding),
        (Linear a, Linear b) => a.InFeatures == b.InFeatures && a.OutFeatures == b.OutFeatures,
        (BatchNorm a, BatchNorm b) => a.NumFeatures == b.NumFeatures && a.Eps.Equals(b.Eps),
        (Activation a, Activation b) => a.Kind == b.Kind,
        _ => false,
    };

    /// <summary>One call's node with <paramref name="head"/>'s tensors, then <paramref name="activation"/>'s nodes.</summary>
    private void Patch(string path, OnnxModuleSource call, Module head, ActivationKind? activation)
    {
        var node = call.Node.Clone();
        var nodes = new List<NodeProto> { node };
        switch (head)
        {
            case Conv c:
                if (c.Bias is not null && !HasInput(node, 2) && call.Absorbed.Count > 0)
                    throw Refuse(path, head, "gains a bias before the zero Pad that writes its output_padding, where the bias would miss the padded border; export it afresh instead");
                SetInput(node, 1, c.Weight, path + ".weight");
                if (c.Bias is { } cb) SetInput(node, 2, cb, path + ".bias");
                break;
            case Linear l when node.OpType == "Gemm":
            {
                var transposed = node.Attribute.FirstOrDefault(a => a.Name == "transB") is not { I: 1 };
                SetInput(node, 1, transposed ? Matrices.Transpose(l.Weight) : l.Weight, path + ".weight");
                if (l.Bias is { } lb) SetInput(node, 2, lb, path + ".bias");
                break;
            }
            case Linear l when node.OpType == "MatMul":
                SetInput(node, 1, Matrices.Transpose(l.Weight), path + ".weight");
                if (l.Bias is { } mb)
                {
                    // MatMul has no bias input: the product goes to a new value and an Add writes the node's output.
                    var output = node.Output[0];
                    node.Output[0] = Fresh(output + "/MatMul");
                    var bias = _writer.Initializer(Fresh(path + ".bias"), mb);
                    nodes.Add(new NodeProto { OpType = "Add", Name = Fresh(path + "/Add"), Input = { node.Output[0], bias }, Output = { output } });
                }
                break;
            case BatchNorm bn when bn.RunningMean is { } mean && bn.RunningVar is { } variance:
                SetInput(node, 1, bn.Weight ?? Tensor.Full(1f, bn.NumFeatures), path + ".weight");
                SetInput(node, 2, bn.Bias ?? Tensor.Full(0f, bn.NumFeatures), path + ".bias");
                SetInput(node, 3, mean, path + ".running_mean");
                SetInput(node, 4, variance, path + ".running_var");
                break;
            case Activation:
                break;
            default:
                throw Refuse(path, head, $"has no form in the file's {node.OpType} node");
        }
        if (activation is { } kind)
        {
            // The group's activation runs on the head's result; the head's output name now belongs to the activation.
            var last = nodes[^1];
            var output = last.Output[0];
            var first = _writer.Nodes.Count;
            last.Output[0] = Fresh(output + "/head");
            var y = _exporter.Activation(kind, new OnnxValue(last.Output[0], []), path + "/" + kind);
            _writer.Rename(y.Name, output);
            nodes.AddRange(_writer.Nodes.Skip(first));
        }
        _replaced[call.Node] = nodes;
    }

    private static bool HasInput(NodeProto n, int index) => index < n.Input.Count && n.Input[index].Length > 0;

    /// <summary>Points input <paramref name="index"/> of <paramref name="node"/> at <paramref name="tensor"/>: in place when the
    /// file's initializer there is read by this node alone, else as a new initializer.</summary>
    private void SetInput(NodeProto node, int index, Tensor tensor, string preferred)
    {
        while (node.Input.Count <= index) node.Input.Add("");
        var name = node.Input[index];
        if (name.Length > 0 && _tensors.ContainsKey(name) && _reads.GetValueOrDefault(name) == 1)
        {
            _tensors[name] = tensor;
            return;
        }
        node.Input[index] = _writer.Initializer(Fresh(preferred), tensor);
    }

    private string Fresh(string name) => _writer.NewName(name);

    private string Resolve(string value)
    {
        // Chains are short (a BatchNorm then an activation), and every alias points at an earlier value: no cycles.
        while (_alias.TryGetValue(value, out var next)) value = next;
        return value;
    }

    private ModelProto Assemble(bool dynamicBatch, out IReadOnlyList<KeyValuePair<string, Tensor>> initializers)
    {
        var proto = _src.Proto.Clone();
        var graph = proto.Graph;
        graph.Node.Clear();
        foreach (var n in _src.Proto.Graph.Node)
        {
            if (_removed.Contains(n)) continue;
            if (_replaced.TryGetValue(n, out var nodes)) graph.Node.AddRange(nodes);
            else graph.Node.Add(n.Clone());
        }
        foreach (var n in graph.Node)
            for (var i = 0; i < n.Input.Count; i++) n.Input[i] = Resolve(n.Input[i]);
        foreach (var o in graph.Output)
        {
            var v = Resolve(o.Name);
            if (v == o.Name) continue;
            // What now reaches the output takes the output's name, or an Identity passes it on (a graph input, an initializer,
            // or a value that is itself another output).
            var producer = graph.Node.FirstOrDefault(n => n.Output.Contains(v));
            if (producer is null || graph.Output.Any(x => x.Name == v))
            {
                graph.Node.Add(new NodeProto { OpType = "Identity", Name = Fresh(o.Name + "/Identity"), Input = { v }, Output = { o.Name } });
                continue;
            }
            foreach (var n in graph.Node)
            {
                for (var i = 0; i < n.Input.Count; i++) if (n.Input[i] == v) n.Input[i] = o.Name;
                for (var i = 0; i < n.Output.Count; i++) if (n.Output[i] == v) n.Output[i] = o.Name;
            }
        }
        // Values that no longer exist lose their recorded shapes; with a symbolic batch every recorded shape would be stale.
        var removed = new HashSet<string>(_alias.Keys, StringComparer.Ordinal);
        var stale = graph.ValueInfo.Where(v => dynamicBatch || removed.Contains(v.Name)).ToArray();
        foreach (var v in stale) graph.ValueInfo.Remove(v);
        if (dynamicBatch)
            foreach (var v in graph.Input.Concat(graph.Output))
                if (v.Type?.TensorType?.Shape is { Dim.Count: > 0 } shape && !_tensors.ContainsKey(v.Name))
                    shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimParam = "batch" };

        // Initializers nothing reads any more (a removed BatchNormalization's) are dropped, in the graph's inputs too.
        var read = new HashSet<string>(StringComparer.Ordinal);
        Reads(graph, read);
        var list = new List<KeyValuePair<string, Tensor>>();
        foreach (var (name, _) in _src.Initializers)
            if (read.Contains(name)) list.Add(new(name, _tensors[name]));
        foreach (var (name, tensor) in _writer.Initializers)
            if (read.Contains(name)) list.Add(new(name, tensor));
        var dropped = _src.Initializers.Where(i => !read.Contains(i.Key)).Select(i => i.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => dropped.Contains(i.Name)).ToArray()) graph.Input.Remove(input);
        if (proto.IrVersion < 4)
        {
            // Before IR 4 every initializer is also a graph input.
            foreach (var (name, tensor) in _writer.Initializers.Where(i => read.Contains(i.Key)))
            {
                var type = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() };
                foreach (var d in tensor.Shape) type.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
                graph.Input.Add(new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = type } });
            }
        }
        initializers = list;
        return proto;
    }

    /// <summary>Every value the nodes of <paramref name="graph"/> and of its subgraphs (If, Loop, Scan bodies read outer
    /// values by name) read, and the graph's outputs.</summary>
    private static void Reads(GraphProto graph, HashSet<string> read)
    {
        foreach (var o in graph.Output) read.Add(o.Name);
        foreach (var n in graph.Node)
        {
            foreach (var i in n.Input) read.Add(i);
            foreach (var a in n.Attribute)
            {
                if (a.G is { } g) Reads(g, read);
                foreach (var sub in a.Graphs) Reads(sub, read);
            }
        }
    }
}
