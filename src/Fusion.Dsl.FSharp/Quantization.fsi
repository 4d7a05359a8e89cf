/// PyTorch's eager post-training quantization (`torch.ao.quantization`) as a pipeline over immutable values:
/// `model |> Quantization.prepare (Quantization.forAll (Quantization.getDefaultQConfig "x86"))
///        |> Quantization.calibrate batches` then `Quantization.convert state observed`, or all at once with
/// `Quantization.quantize`. Nothing is changed in place; every step returns a new value.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Quantization

open Fusion.Dsl.Algebra
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tensors

/// `get_default_qconfig(backend)` for "x86", "fbgemm", "onednn" or "qnnpack"; raises ArgumentException for another name.
[<CompiledName("GetDefaultQConfig")>]
val getDefaultQConfig: backend: string -> QConfig
/// A custom qconfig from activation and weight observer factories (`QConfig(activation=..., weight=...)`).
[<CompiledName("QConfig")>]
val qconfig: name: string -> activation: (unit -> Observer) -> weight: (unit -> Observer) -> QConfig
/// Every module gets this qconfig (`model.qconfig = qconfig`).
[<CompiledName("ForAll")>]
val forAll: qconfig: QConfig -> QConfigMapping
/// Modules of this PyTorch type name get this qconfig (None: kept float), as a `qconfig_dict` type key.
[<CompiledName("WithType")>]
val withType: typeName: string -> qconfig: QConfig option -> mapping: QConfigMapping -> QConfigMapping
/// The module at this dotted path and its subtree get this qconfig (None: kept float), as `qconfig_dict` path keys and
/// a module's own `.qconfig` do.
[<CompiledName("WithPath")>]
val withPath: path: string -> qconfig: QConfig option -> mapping: QConfigMapping -> QConfigMapping
/// `propagate_qconfig_`: every module's qconfig by dotted path ("" is the root); None keeps it float.
[<CompiledName("PropagateQConfig")>]
val propagateQConfig: mapping: QConfigMapping -> model: Module -> Map<string, QConfig option>
/// `QuantWrapper(module)`: quant, then the module, then dequant.
[<CompiledName("QuantWrapper")>]
val quantWrapper: model: Module -> Module
/// `prepare(model)`: the observed modules and their fresh observers; raises ArgumentException naming a module that
/// PyTorch would quantize but this project cannot.
[<CompiledName("Prepare")>]
val prepare: mapping: QConfigMapping -> model: Module -> ObservedModel
/// Calibration: runs the float model (the engine) on every batch; returns the observers' state.
[<CompiledName("Calibrate")>]
val calibrate: batches: Tensor seq -> observed: ObservedModel -> CalibrationState
/// `convert(model)`: the int8 model with the observed scales and zero points.
[<CompiledName("Convert")>]
val convert: state: CalibrationState -> observed: ObservedModel -> QuantizedModel
/// `quantize(model, run_fn=calibration over batches)`: prepare, calibrate and convert at once.
[<CompiledName("Quantize")>]
val quantize: mapping: QConfigMapping -> batches: Tensor seq -> model: Module -> QuantizedModel
/// The int8 model's forward on a float input (a quantized output is dequantized).
[<CompiledName("Forward")>]
val forward: input: Tensor -> model: QuantizedModel -> Tensor
/// `get_default_qat_qconfig(backend)` for "x86", "fbgemm", "onednn" or "qnnpack" (fused moving-average fake-quantize
/// modules); raises ArgumentException for another name.
[<CompiledName("GetDefaultQatQConfig")>]
val getDefaultQatQConfig: backend: string -> QConfig
/// `prepare_qat(model)` on a training-mode model fused with `Fuse.modulesQat`: the QAT modules (Conv2d/3d,
/// ConvReLU2d/3d, ConvBn1d/2d/3d, ConvBnReLU1d/2d/3d, Linear, LinearReLU, LinearBn1d; Conv1d and ConvReLU1d stay float
/// with their outputs fake-quantized, as PyTorch 1.13's mapping leaves them) and their initial state
/// (`qat.InitialState`); raises ArgumentException naming a module in eval mode or without a QAT form here.
[<CompiledName("PrepareQat")>]
val prepareQat: mapping: QConfigMapping -> model: Module -> QatModel
/// The QAT model's forward in training (`true`) or eval mode from `state`: the output and the new state (fake-quantize
/// modules and Conv+BatchNorm / LinearBn1d running statistics); `state` is unchanged.
[<CompiledName("ForwardQat")>]
val forwardQat: training: bool -> input: Tensor -> state: QatState -> qat: QatModel -> Tensor * QatState
/// A QAT state_dict PyTorch saved (`torch.save(qat_model.state_dict(), path)`) read into the prepared model: the model
/// with the file's weights and the file's state; raises ModelFormatException naming the file and a missing,
/// unexpected or wrongly shaped key.
[<CompiledName("LoadQatStateDict")>]
val loadQatStateDict: path: string -> qat: QatModel -> QatModel * QatState
/// `model.apply(freeze_bn_stats)`: the state with every Conv+BatchNorm's statistics frozen (used, not updated, in
/// training mode too); LinearBn1d keeps updating, as PyTorch 1.13's function leaves it.
[<CompiledName("FreezeBnStats")>]
val freezeBnStats: state: QatState -> qat: QatModel -> QatState
/// `model.apply(update_bn_stats)`: the inverse of `freezeBnStats`.
[<CompiledName("UpdateBnStats")>]
val updateBnStats: state: QatState -> qat: QatModel -> QatState
/// `convert(qat_model.eval())`: the int8 model, Conv+BatchNorm and LinearBn1d folded with the state's running statistics.
[<CompiledName("ConvertQat")>]
val convertQat: state: QatState -> qat: QatModel -> QuantizedModel
/// Writes the prepared model's parameters and `state` as the state_dict PyTorch's `prepare_qat` model takes strictly.
[<CompiledName("SaveQatStateDict")>]
val saveQatStateDict: path: string -> state: QatState -> qat: QatModel -> unit
