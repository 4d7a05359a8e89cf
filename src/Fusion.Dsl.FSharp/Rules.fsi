namespace Fusion.Dsl.FSharp

open Fusion.Dsl.Algebra
open Fusion.Dsl.Rules

/// Fusion rules as values: a name, the PyTorch kinds it matches, guards, and a pure fuser.
/// `Rule.ofMatch "conv-bn-relu6" ["Conv2d"; "BatchNorm2d"; "ReLU6"] (fun isQat -> function [Conv2d c; BatchNorm2d bn; ReLU6 r] -> Some ... | _ -> None)`.
[<RequireQualifiedAccess>]
module Rule =
    /// A rule from a name, the exact PyTorch type names it matches, in order, and a pure fuser
    /// (isQat → the group's modules → the fused module placed at the first position; the others become Identity).
    [<CompiledName("Create")>]
    val create: name: string -> pattern: string list -> fuser: (bool -> Module list -> Module) -> FusionRule
    /// A rule whose fuser is an F# match: `None` (the modules do not fit the match) is refused as a FuserResult error
    /// naming the rule, never silently skipped.
    [<CompiledName("OfMatch")>]
    val ofMatch: name: string -> pattern: string list -> fuser: (bool -> Module list -> Module option) -> FusionRule
    /// The rule with one more guard: `check` returns the problem (Some text) or None; a failing guard refuses the group
    /// with `kind` and the remedy text.
    [<CompiledName("WithGuard")>]
    val withGuard: guardName: string -> kind: FusionErrorKind -> check: (Module list -> string option) -> remedy: string -> rule: FusionRule -> FusionRule
    /// The rule's name.
    [<CompiledName("Name")>]
    val inline name: rule: FusionRule -> string
    /// The PyTorch type names the rule matches.
    [<CompiledName("Pattern")>]
    val pattern: rule: FusionRule -> string list

/// Rule sets compose: PyTorch's defaults plus a user's own, the user's winning for the same pattern.
[<RequireQualifiedAccess>]
module Rules =
    /// PyTorch's 16 default patterns, in PyTorch's order.
    [<CompiledName("Defaults")>]
    val defaults: RuleSet
    /// No rules at all.
    [<CompiledName("Empty")>]
    val empty: RuleSet
    /// The set with `rule` added; a rule for the same pattern already there is replaced in place.
    [<CompiledName("Add")>]
    val inline add: rule: FusionRule -> rules: RuleSet -> RuleSet
    /// The set with every rule of `extra` added, in order (each winning over an existing rule for its pattern).
    [<CompiledName("Extend")>]
    val extend: extra: FusionRule list -> rules: RuleSet -> RuleSet
    /// The rule for an exact sequence of type names, if any.
    [<CompiledName("TryFind")>]
    val tryFind: kinds: string list -> rules: RuleSet -> FusionRule option
    /// The rules in order.
    [<CompiledName("ToList")>]
    val toList: rules: RuleSet -> FusionRule list
    /// PyTorch's defaults plus this project's patterns and the residual-add graph rules (RuleSet.Extended).
    [<CompiledName("Extended")>]
    val extended: RuleSet
    /// The set with the graph rule `rule` added; a graph rule of the same name already there is replaced in place.
    [<CompiledName("AddGraph")>]
    val addGraph: rule: GraphRule -> rules: RuleSet -> RuleSet
    /// The graph rules in the order the rewriter prefers them.
    [<CompiledName("GraphRules")>]
    val graphRules: rules: RuleSet -> GraphRule list
