using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Onnx;

/// <summary>What <see cref="OnnxModel.Load(string)"/> reads from an ONNX file.</summary>
public sealed class OnnxImport
{
    private readonly int[] _inputShape;

    internal OnnxImport(Module model, int[] inputShape, bool dynamicBatch, long opset, IReadOnlyList<string> files,
        OnnxSource source, IReadOnlyList<string> carried)
    {
        Source = source;
        CarriedOperators = carried;
        Files = files;
        Model = model;
        _inputShape = inputShape;
        DynamicBatch = dynamicBatch;
        Opset = opset;
    }

    /// <summary>The model: a root container whose forward graph calls the imported modules by their paths.</summary>
    public Module Model { get; }

    /// <summary>The graph input's shape (a symbolic first dimension reads as 1; see <see cref="DynamicBatch"/>).</summary>
    public int[] InputShape => (int[])_inputShape.Clone();

    /// <summary>Whether the input's first dimension is symbolic in the file.</summary>
    public bool DynamicBatch { get; }

    /// <summary>The file's opset (default domain).</summary>
    public long Opset { get; }

    /// <summary>
    /// The operators (sorted, each once; <c>domain::Op</c> outside the default domain) that the import carries verbatim:
    /// nodes with no module or graph operation here, or whose configuration has none. Fusion works around them, the engine
    /// refuses to evaluate them (naming the node), and <see cref="OnnxModel.Write(OnnxImport, Module, string, OnnxExportOptions?)"/>
    /// writes them back unchanged.
    /// </summary>
    public IReadOnlyList<string> CarriedOperators { get; }

    /// <summary>The file as read, for the write-back.</summary>
    internal OnnxSource Source { get; }

    /// <summary>The files the model was read from: the <c>.onnx</c> file (its full path) first, then every external data
    /// file (resolved paths), so that a tool can refuse to write over any of them.</summary>
    public IReadOnlyList<string> Files { get; }
}
