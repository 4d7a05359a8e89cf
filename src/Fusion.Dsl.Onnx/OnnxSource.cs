using Fusion.Dsl.Algebra;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Onnx;

/// <summary>
/// What an import keeps of its file so that a fused model can be written back into it: the parsed model without the
/// initializers it decoded (their tensors are the model's own, listed here, so the weights are held once), the model as
/// imported, and the nodes behind each module path.
/// </summary>
/// <param name="Proto">The file's model; its graph lists only the initializers kept verbatim (other element types).</param>
/// <param name="Original">The imported model, against which a fused model's changes are found.</param>
/// <param name="Initializers">The decoded initializers in file order.</param>
/// <param name="Modules">The calls of each module path.</param>
internal sealed record OnnxSource(
    ModelProto Proto,
    Module Original,
    IReadOnlyList<KeyValuePair<string, Tensor>> Initializers,
    IReadOnlyDictionary<string, List<OnnxModuleSource>> Modules);
