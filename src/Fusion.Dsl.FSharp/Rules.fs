namespace Fusion.Dsl.FSharp

open System
open Fusion.Dsl.Algebra
open Fusion.Dsl.Rules

[<RequireQualifiedAccess>]
module Rule =
    let private applier (fuser: bool -> Module list -> Module) =
        Func<bool, Collections.Generic.IReadOnlyList<Module>, Module>(fun isQat ms -> fuser isQat (List.ofSeq ms))

    [<CompiledName("Create")>]
    let create (name: string) (pattern: string list) (fuser: bool -> Module list -> Module) =
        FusionRule.Create(name, FusionPattern.Of pattern, applier fuser)

    [<CompiledName("OfMatch")>]
    let ofMatch (name: string) (pattern: string list) (fuser: bool -> Module list -> Module option) =
        let run isQat (ms: Module list) =
            match fuser isQat ms with
            | Some m -> m
            | None ->
                // A null result is the engine's FuserResult refusal, which names the rule and the group.
                Unchecked.defaultof<Module>
        FusionRule.Create(name, FusionPattern.Of pattern, applier run)

    [<CompiledName("WithGuard")>]
    let withGuard (guardName: string) (kind: FusionErrorKind) (check: Module list -> string option) (remedy: string) (rule: FusionRule) =
        let g =
            FusionGuard.Create(guardName, kind, Func<FusionMatch, string | null>(fun m ->
                match check (List.ofSeq m.Modules) with
                | Some problem -> problem
                | None -> null), remedy)
        FusionRule.Create(rule.Name, rule.Pattern, rule.Applier, Seq.append rule.Guards [ g ])

    [<CompiledName("Name")>]
    let inline name (rule: FusionRule) = rule.Name

    [<CompiledName("Pattern")>]
    let pattern (rule: FusionRule) = List.ofSeq rule.Pattern.Kinds

[<RequireQualifiedAccess>]
module Rules =
    [<CompiledName("Defaults")>]
    let defaults = RuleSet.Default

    [<CompiledName("Empty")>]
    let empty = RuleSet.Empty

    [<CompiledName("Add")>]
    let inline add (rule: FusionRule) (rules: RuleSet) = rules.With rule

    [<CompiledName("Extend")>]
    let extend (extra: FusionRule list) (rules: RuleSet) = rules.Override extra

    [<CompiledName("TryFind")>]
    let tryFind (kinds: string list) (rules: RuleSet) = rules.Find(Array.ofList kinds) |> Option.ofObj

    [<CompiledName("ToList")>]
    let toList (rules: RuleSet) = List.ofSeq rules

    [<CompiledName("Extended")>]
    let extended = RuleSet.Extended

    [<CompiledName("AddGraph")>]
    let addGraph (rule: GraphRule) (rules: RuleSet) = rules.WithGraph rule

    [<CompiledName("GraphRules")>]
    let graphRules (rules: RuleSet) = List.ofSeq rules.GraphRules
