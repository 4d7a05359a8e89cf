[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Model

open Fusion.Dsl.Algebra

[<CompiledName("Get")>]
let inline get (path: string) (model: Module) = ModulePath.Get(model, path)

[<CompiledName("TryGet")>]
let tryGet (path: string) (model: Module) =
    match ModulePath.TryGet(model, path) with
    | true, m -> Some m
    | _ -> None

[<CompiledName("Replace")>]
let inline replace (path: string) (replacement: Module) (model: Module) = ModulePath.Replace(model, path, replacement)

[<CompiledName("ReplaceAll")>]
let replaceAll (replacements: (string * Module) list) (model: Module) =
    ModulePath.ReplaceAll(model, [ for p, m in replacements -> System.Collections.Generic.KeyValuePair(p, m) ])

[<CompiledName("NamedModules")>]
let namedModules (model: Module) = [ for kv in model.NamedModules() -> kv.Key, kv.Value ]

[<CompiledName("StateDict")>]
let stateDict (model: Module) = [ for kv in model.StateDict() -> kv.Key, kv.Value ]

[<CompiledName("LoadStateDict")>]
let loadStateDict (path: string) (model: Module) = Fusion.Dsl.IO.StateDict.LoadFile(model, path)

[<CompiledName("ParameterCount")>]
let inline parameterCount (model: Module) = model.StateElementCount()

[<CompiledName("Train")>]
let inline train (model: Module) = model.Train(true)

[<CompiledName("Forward")>]
let inline forward (input: Fusion.Dsl.Tensors.Tensor) (model: Module) = Fusion.Dsl.Engine.Forward.Run(model, input)

[<CompiledName("Session")>]
let session (model: Module) = Fusion.Dsl.Engine.EngineSession.Open model

[<CompiledName("SessionWith")>]
let sessionWith (options: Fusion.Dsl.Engine.EngineSessionOptions) (model: Module) = Fusion.Dsl.Engine.EngineSession.Open(model, options)

[<CompiledName("Eval")>]
let inline eval (model: Module) = model.Eval()

[<CompiledName("Diff")>]
let diff (before: Module) (after: Module) = Fusion.Dsl.Analysis.ModelDiff.Compare(before, after)

[<CompiledName("Print")>]
let print (model: Module) = ModuleRepr.Print model
