/// Functions over module trees, pipeline-friendly: `model |> Model.get "layer1.0.conv1"`.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Model

open Fusion.Dsl.Algebra
open Fusion.Dsl.Tensors
open Fusion.Dsl.Analysis
open Fusion.Dsl.Engine

/// The module at a dotted path; raises ModulePathException naming the missing segment.
[<CompiledName("Get")>]
val inline get: path: string -> model: Module -> Module
/// The module at a dotted path, or None.
[<CompiledName("TryGet")>]
val tryGet: path: string -> model: Module -> Module option
/// A new tree with the module at `path` replaced; every other subtree shared, the same tree when nothing changes.
[<CompiledName("Replace")>]
val inline replace: path: string -> replacement: Module -> model: Module -> Module
/// A new tree with every (path, replacement) applied in order, as successive `replace` calls would, but rebuilding each
/// module on the changed paths once; the same tree when nothing changes.
[<CompiledName("ReplaceAll")>]
val replaceAll: replacements: (string * Module) list -> model: Module -> Module
/// Every module with its dotted path (the root at "").
[<CompiledName("NamedModules")>]
val namedModules: model: Module -> (string * Module) list
/// Every tensor under PyTorch's state_dict key names.
[<CompiledName("StateDict")>]
val stateDict: model: Module -> (string * Tensor) list
/// The model with the state_dict of a file loaded as `load_state_dict(..., strict=True)` does: a torch.save `.pt`/`.pth`
/// checkpoint or a safetensors file, told apart by content (`model |> Model.loadStateDict "resnet18.pth"`). Raises
/// ModelFormatException for a file that is neither, StateDictException for keys or shapes that do not fit.
[<CompiledName("LoadStateDict")>]
val loadStateDict: path: string -> model: Module -> Module
/// Number of elements in every parameter and buffer.
[<CompiledName("ParameterCount")>]
val inline parameterCount: model: Module -> int64
/// The tree in training mode (subtrees already in that mode shared).
[<CompiledName("Train")>]
val inline train: model: Module -> Module
/// Runs the model's forward pass on a batch (`model |> Model.forward x`); the model is not changed. It goes through
/// `Forward.Run`, whose process-wide store keeps the packed weights of every model it has run (until the model is
/// collected), so repeated calls pack them once; `session` frees them at a known point and sets budgets.
[<CompiledName("Forward")>]
val inline forward: input: Tensor -> model: Module -> Tensor
/// Opens an engine session on the model (every core, up to 256 MiB of pooled buffers): it holds the packed weights and
/// intermediate buffers of its passes until disposed. `use session = model |> Model.session` then
/// `session |> Session.run x`.
[<CompiledName("Session")>]
val session: model: Module -> EngineSession
/// `session` with budgets: `model |> Model.sessionWith (EngineSessionOptions(Threads = 2, MaxPooledBufferBytes = 64L <<< 20))`.
/// Raises ArgumentOutOfRangeException for a thread count below one or a negative limit.
[<CompiledName("SessionWith")>]
val sessionWith: options: EngineSessionOptions -> model: Module -> EngineSession
/// The tree in eval mode (subtrees already in that mode shared).
[<CompiledName("Eval")>]
val inline eval: model: Module -> Module
/// What fusion changed from `before` to `after` (groups replaced, modules turned into Identity, parameters folded away);
/// `printfn "%O"` shows the report.
[<CompiledName("Diff")>]
val diff: before: Module -> after: Module -> ModelDiff
/// The tree as PyTorch's `print(model)` shows it.
[<CompiledName("Print")>]
val print: model: Module -> string
