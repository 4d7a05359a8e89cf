using Fusion.Dsl.Onnx.Proto;

namespace Fusion.Dsl.Onnx;

/// <summary>One call of an imported module by the source file's nodes: what the write-back patches or removes.</summary>
/// <param name="Node">The node that computes the module (Conv, Gemm, BatchNormalization, Relu; the Mul of a SiLU).</param>
/// <param name="DataInput">The value the module reads (for a SiLU, the Sigmoid's input).</param>
/// <param name="Absorbed">Other nodes read as part of the module: a SiLU's Sigmoid, the zero Pad after a ConvTranspose.</param>
internal sealed record OnnxModuleSource(NodeProto Node, string DataInput, IReadOnlyList<NodeProto> Absorbed);
