using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Onnx.Proto;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// A second exporter in front of the float one: it sees every module call and every graph operation first and writes
/// its own form where it has one (the QDQ export of a converted int8 model writes QuantizeLinear/DequantizeLinear
/// around the float operators), leaving the rest to the float exporter.
/// </summary>
internal interface IExportHook
{
    /// <summary>The output of <paramref name="m"/> called at <paramref name="path"/> on <paramref name="x"/>, or null to
    /// export it in its float form.</summary>
    OnnxValue? Module(Module m, OnnxValue x, string path);

    /// <summary>The value of the graph operation <paramref name="call"/> at <paramref name="path"/>; <paramref name="floatForm"/>
    /// writes (and returns) its float form.</summary>
    object? Operation(OpCall call, string path, Func<object?> floatForm);

    /// <summary>Checks the graph's <paramref name="result"/> once the whole model is written (a value left half-done is refused).</summary>
    void Finish(OnnxValue result);

    /// <summary>Whether <paramref name="x"/> stands for a quantized tensor (a DequantizeLinear's output), for a float form
    /// whose meaning differs on one: PyTorch's quantized nearest upsampling has none of its float NHWC kernel's special
    /// cases.</summary>
    bool Quantized(OnnxValue x);

    /// <summary>Initializers of types the float export does not write (8-bit and int32 tensors), built as protobuf tensors.</summary>
    IReadOnlyList<TensorProto> Initializers { get; }
}
