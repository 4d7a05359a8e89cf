[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Fuse

open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Rules

let private seqs (groups: string list list) = groups |> Seq.map Seq.ofList

let private run isQat (rules: RuleSet) groups (model: Module) =
    let options = FuseOptions(Rules = rules)
    if isQat then Fuser.FuseModulesQat(model, seqs groups, options) else Fuser.FuseModules(model, seqs groups, options)

[<CompiledName("Modules")>]
let modules groups model = run false RuleSet.Default groups model

[<CompiledName("ModulesQat")>]
let modulesQat groups model = run true RuleSet.Default groups model

[<CompiledName("ModulesWith")>]
let modulesWith rules groups model = run false rules groups model

[<CompiledName("ModulesQatWith")>]
let modulesQatWith rules groups model = run true rules groups model

let private attempt f =
    try Ok(f ()) with :? FusionException as e -> Error e

[<CompiledName("TryModules")>]
let tryModules groups model = attempt (fun () -> modules groups model)

[<CompiledName("TryModulesQat")>]
let tryModulesQat groups model = attempt (fun () -> modulesQat groups model)

let private toLists (groups: System.Collections.Generic.IReadOnlyList<System.Collections.Generic.IReadOnlyList<string>>) =
    [ for g in groups -> List.ofSeq g ]

[<CompiledName("Auto")>]
let auto (model: Module) = toLists (Fuser.FindFusableGroups(model, RuleSet.Default))

[<CompiledName("AutoWith")>]
let autoWith (rules: RuleSet) (model: Module) = toLists (Fuser.FindFusableGroups(model, rules))

[<CompiledName("FoldConstants")>]
let foldConstants (model: Module) = Fuser.FoldGraphConstants model

[<CompiledName("Graphs")>]
let graphs (rules: RuleSet) (model: Module) = Fuser.FuseGraphs(model, rules)

[<CompiledName("FindGraphs")>]
let findGraphs (rules: RuleSet) (model: Module) = List.ofSeq (Fuser.FindGraphFusions(model, rules))
