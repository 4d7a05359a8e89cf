using System.Reflection;
using Fusion.Dsl.Onnx.Export;
using Fusion.Dsl.Onnx.Proto;
using Module = Fusion.Dsl.Algebra.Module;

namespace Fusion.Dsl.Onnx;

/// <summary>
/// ONNX as a way out of and into Fusion.Dsl. <see cref="Write(Module, int[], string, OnnxExportOptions?)"/> writes a
/// model (fused or not) as a standard ONNX graph that ONNX Runtime and other consumers run with the engine's inference
/// semantics; <see cref="Read(string)"/> turns an ONNX graph of the same operators back into a module tree with a forward
/// graph that the DSL can fuse.
/// </summary>
public static class OnnxModel
{
    /// <summary>The ONNX IR version written (8: ONNX 1.10 and later, ONNX Runtime 1.10 and later read it).</summary>
    public const long IrVersion = 8;

    /// <summary>The name of the graph's input.</summary>
    public const string InputName = "input";

    /// <summary>The name of the graph's output.</summary>
    public const string OutputName = "output";

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> as ONNX for inputs of <paramref name="inputShape"/>
    /// (float32; the first entry is the batch size, symbolic with <see cref="OnnxExportOptions.DynamicBatch"/>).
    /// Initializers are named by the <c>state_dict</c> keys (a fused group's folded weights under its first child,
    /// <c>conv1.0.weight</c>) and nodes by module paths. The file is replaced atomically (symbolic links followed): on any
    /// error nothing is written.
    /// </summary>
    /// <exception cref="OnnxExportException">A module cannot be expressed in ONNX, or does not fit the input shape; the
    /// message names the module path and the reason.</exception>
    /// <exception cref="ArgumentException">The input shape is empty or has a non-positive entry, or the opset is out of range.</exception>
    /// <exception cref="IO.ModelFormatException">The file cannot be written there: the path is empty, a directory, device or
    /// pipe is in its place, or the write fails (see <see cref="IO.OutputFile"/>); the old file is then unchanged.</exception>
    public static void Write(Module model, int[] inputShape, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentNullException.ThrowIfNull(path);
        var o = options ?? OnnxExportOptions.Default;
        var proto = Build(model, inputShape, o, out var initializers);
        OnnxFileWriter.Write(path, proto, initializers, o.ExternalData);
    }

    /// <summary>
    /// Writes <paramref name="model"/>, which was read from <paramref name="source"/>'s file and then fused (or otherwise had
    /// modules replaced), back into that file's own graph: a module fusion replaced by an <c>Identity</c> (a BatchNorm) loses
    /// its node, a head with folded weights gets them in its node, a fused group's activation follows its head, and every
    /// other node, initializer, opset and metadata entry is the file's, so operators the import carries verbatim come back
    /// unchanged. With <see cref="OnnxExportOptions.DynamicBatch"/> the inputs' and outputs' first dimension becomes
    /// symbolic; the opset stays the file's. The file is replaced atomically (symbolic links followed).
    /// </summary>
    /// <exception cref="OnnxExportException">The model's forward graph is not the file's, or a module changed into something a
    /// node of the file cannot express (for example a different layer); the message names the module path.</exception>
    /// <exception cref="IO.ModelFormatException">The file cannot be written there (see <see cref="IO.OutputFile"/>).</exception>
    public static void Write(OnnxImport source, Module model, string path, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        var o = options ?? OnnxExportOptions.Default;
        var (proto, initializers, _) = WriteBack.OnnxWriteBack.Build(source.Source, model, o.DynamicBatch);
        OnnxFileWriter.Write(path, proto, initializers, o.ExternalData);
    }

    /// <summary>
    /// Reads an ONNX model as a module tree plus forward graph (see <see cref="Load(string)"/>): operators with weights become
    /// modules at the paths their initializer names give (<c>layer1.0.conv1.weight</c> → <c>layer1.0.conv1</c>), parameter-free
    /// ones at the paths of their node names (<c>/layer1/layer1.0/relu/Relu</c> → <c>layer1.0.relu</c>), so that the DSL's
    /// rules find the fusable groups. Every size read is bounded by the file's real length.
    /// </summary>
    /// <exception cref="IO.ModelFormatException">The file is truncated or corrupt, uses an operator outside the supported set,
    /// an external-data file is missing, the graph has a cycle or a dangling input, or its opset is older than 13; the
    /// message names the node or tensor.</exception>
    public static Module Read(string path) => Load(path).Model;

    /// <summary>Reads an ONNX model with its input shape and opset (see <see cref="Read(string)"/>).</summary>
    /// <exception cref="IO.ModelFormatException">As for <see cref="Read(string)"/>.</exception>
    public static OnnxImport Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Import.OnnxImporter.Read(path);
    }

    /// <summary>Reads an ONNX model from a file already opened (<see cref="IO.ModelInput.Open"/>, which told it ONNX by its
    /// content), reading its bytes once.</summary>
    /// <exception cref="IO.ModelFormatException">As for <see cref="Read(string)"/>.</exception>
    public static OnnxImport Load(IO.ModelInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return Import.OnnxImporter.Read(input);
    }

    internal static ModelProto Build(Module model, int[] inputShape, OnnxExportOptions options,
        out IReadOnlyList<KeyValuePair<string, Tensors.Tensor>> initializers, Func<OnnxExporter, IExportHook>? hook = null, string? docString = null)
    {
        if (inputShape.Length == 0 || inputShape.Any(d => d <= 0))
            throw new ArgumentException($"the input shape must have positive entries, got [{string.Join(", ", inputShape)}]", nameof(inputShape));
        if (options.Opset is < OnnxExportOptions.MinOpset or > OnnxExportOptions.MaxOpset)
            throw new ArgumentException($"opset {options.Opset} is not written; choose {OnnxExportOptions.MinOpset} to {OnnxExportOptions.MaxOpset}", nameof(options));
        var writer = new OnnxGraphWriter();
        writer.Reserve(InputName);
        writer.Reserve(OutputName);
        var exporter = new OnnxExporter(writer, options);
        exporter.Hook = hook?.Invoke(exporter);
        var result = exporter.Module(model, new OnnxValue(InputName, (int[])inputShape.Clone()), "");
        exporter.Hook?.Finish(result);
        // The output must come from a node: a model that returns its input (an Identity) gets an Identity node.
        if (!writer.IsNodeOutput(result.Name)) result = writer.Node("Identity", "", [result.Name], result.Shape);
        writer.Rename(result.Name, OutputName);

        var graph = new GraphProto { Name = model.TypeName };
        graph.Node.AddRange(writer.Nodes);
        if (exporter.Hook is { } h) graph.Initializer.AddRange(h.Initializers);
        graph.Input.Add(ValueInfo(InputName, inputShape, options.DynamicBatch));
        // With a dynamic batch, an output whose first dimension is the batch's size is declared with the symbolic batch.
        graph.Output.Add(ValueInfo(OutputName, result.Shape, options.DynamicBatch && result.Rank > 0 && result.Shape[0] == inputShape[0]));
        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "Fusion.Dsl",
            ProducerVersion = typeof(OnnxModel).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
            DocString = docString ?? $"{model.TypeName} exported by Fusion.Dsl (inference semantics of Forward.Run)",
            Graph = graph,
        };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = options.Opset });
        initializers = writer.Initializers;
        return proto;
    }

    private static ValueInfoProto ValueInfo(string name, int[] shape, bool dynamicBatch)
    {
        var tensor = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() };
        for (var i = 0; i < shape.Length; i++)
            tensor.Shape.Dim.Add(i == 0 && dynamicBatch
                ? new TensorShapeProto.Types.Dimension { DimParam = "batch" }
                : new TensorShapeProto.Types.Dimension { DimValue = shape[i] });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensor } };
    }
}
