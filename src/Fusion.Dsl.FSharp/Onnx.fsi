/// ONNX out and in, pipeline-friendly: `fused |> Onnx.write [1; 3; 224; 224] "fused.onnx"`, `Onnx.read "model.onnx"`.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Onnx

open Fusion.Dsl.Algebra

/// Writes the model as ONNX (opset 17, fixed batch) for inputs of the given shape; raises OnnxExportException naming the
/// module that ONNX cannot express. The file is replaced atomically.
[<CompiledName("Write")>]
val write: inputShape: int list -> path: string -> model: Module -> unit
/// Writes the model as ONNX whose first input dimension is the symbolic batch, so any batch size runs.
[<CompiledName("WriteDynamicBatch")>]
val writeDynamicBatch: inputShape: int list -> path: string -> model: Module -> unit
/// Reads an ONNX model as a module tree with a forward graph; raises ModelFormatException naming the node or tensor.
[<CompiledName("Read")>]
val read: path: string -> Module
