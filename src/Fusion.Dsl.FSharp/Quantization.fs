[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Quantization

open Fusion.Dsl.Algebra
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tensors

[<CompiledName("GetDefaultQConfig")>]
let getDefaultQConfig (backend: string) = EagerQuantization.GetDefaultQConfig backend

[<CompiledName("QConfig")>]
let qconfig (name: string) (activation: unit -> Observer) (weight: unit -> Observer) =
    QConfig(name, System.Func<Observer>(activation), System.Func<Observer>(weight))

[<CompiledName("ForAll")>]
let forAll (qconfig: QConfig) = QConfigMapping.ForAll qconfig

[<CompiledName("WithType")>]
let withType (typeName: string) (qconfig: QConfig option) (mapping: QConfigMapping) = mapping.WithType(typeName, Option.toObj qconfig)

[<CompiledName("WithPath")>]
let withPath (path: string) (qconfig: QConfig option) (mapping: QConfigMapping) = mapping.WithPath(path, Option.toObj qconfig)

[<CompiledName("PropagateQConfig")>]
let propagateQConfig (mapping: QConfigMapping) (model: Module) =
    EagerQuantization.PropagateQConfig(model, mapping) |> Seq.map (fun kv -> kv.Key, Option.ofObj kv.Value) |> Map.ofSeq

[<CompiledName("QuantWrapper")>]
let quantWrapper (model: Module) : Module = EagerQuantization.QuantWrapper model

[<CompiledName("Prepare")>]
let prepare (mapping: QConfigMapping) (model: Module) = EagerQuantization.Prepare(model, mapping)

[<CompiledName("Calibrate")>]
let calibrate (batches: Tensor seq) (observed: ObservedModel) = EagerQuantization.Calibrate(observed, batches)

[<CompiledName("Convert")>]
let convert (state: CalibrationState) (observed: ObservedModel) = EagerQuantization.Convert(observed, state)

[<CompiledName("Quantize")>]
let quantize (mapping: QConfigMapping) (batches: Tensor seq) (model: Module) =
    let observed = prepare mapping model
    convert (calibrate batches observed) observed

[<CompiledName("Forward")>]
let forward (input: Tensor) (model: QuantizedModel) = model.Forward input

[<CompiledName("GetDefaultQatQConfig")>]
let getDefaultQatQConfig (backend: string) = QConfig.GetDefaultQat backend

[<CompiledName("PrepareQat")>]
let prepareQat (mapping: QConfigMapping) (model: Module) = EagerQat.PrepareQat(model, mapping)

[<CompiledName("ForwardQat")>]
let forwardQat (training: bool) (input: Tensor) (state: QatState) (qat: QatModel) =
    let r = EagerQat.ForwardQat(qat, state, input, training)
    r.Output, r.State

[<CompiledName("LoadQatStateDict")>]
let loadQatStateDict (path: string) (qat: QatModel) =
    let c = QatStateDict.Load(qat, path)
    c.Model, c.State

[<CompiledName("FreezeBnStats")>]
let freezeBnStats (state: QatState) (qat: QatModel) = EagerQat.FreezeBnStats(qat, state)

[<CompiledName("UpdateBnStats")>]
let updateBnStats (state: QatState) (qat: QatModel) = EagerQat.UpdateBnStats(qat, state)

[<CompiledName("ConvertQat")>]
let convertQat (state: QatState) (qat: QatModel) = EagerQat.ConvertQat(qat, state)

[<CompiledName("SaveQatStateDict")>]
let saveQatStateDict (path: string) (state: QatState) (qat: QatModel) = QatStateDict.Save(qat, state, path)
