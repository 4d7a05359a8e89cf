/// ONNX out and in, pipeline-friendly: `fused |> Onnx.write [1; 3; 224; 224] "fused.onnx"`, `Onnx.read "model.onnx"`.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Onnx

open Fusion.Dsl.Algebra
open Fusion.Dsl.Onnx

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
/// Reads an ONNX model with its input shape and what it carries verbatim (`imported.Model`, `imported.CarriedOperators`).
[<CompiledName("Load")>]
val load: path: string -> OnnxImport
/// Writes a model read with `load` (and fused) back into that file's own graph: only what fusion changed changes, so
/// operators carried verbatim come back unchanged: `fused |> Onnx.writeBack imported "fused.onnx"`.
[<CompiledName("WriteBack")>]
val writeBack: source: OnnxImport -> path: string -> model: Module -> unit
