[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Onnx

open Fusion.Dsl.Algebra
open Fusion.Dsl.Onnx

[<CompiledName("Write")>]
let write (inputShape: int list) (path: string) (model: Module) = OnnxModel.Write(model, List.toArray inputShape, path)

[<CompiledName("WriteDynamicBatch")>]
let writeDynamicBatch (inputShape: int list) (path: string) (model: Module) =
    OnnxModel.Write(model, List.toArray inputShape, path, OnnxExportOptions(DynamicBatch = true))

[<CompiledName("Read")>]
let read (path: string) : Module = OnnxModel.Read path

[<CompiledName("Load")>]
let load (path: string) : OnnxImport = OnnxModel.Load path

[<CompiledName("WriteBack")>]
let writeBack (source: OnnxImport) (path: string) (model: Module) = OnnxModel.Write(source, model, path)
