/// PyTorch's fuse_modules as pipeline functions:
/// `model |> Fuse.modules [ ["conv1"; "bn1"; "relu1"]; ["sub.conv"; "sub.relu"] ]`.
/// Fusion is pure: the input is never changed, untouched subtrees are shared, and a refusal raises
/// FusionException (or returns Error from the `try` forms) without producing any model.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Fuse

open Fusion.Dsl.Algebra
open Fusion.Dsl.Rules

/// `fuse_modules`: eval fusion with PyTorch's default rules (BatchNorm folded, activations grouped).
[<CompiledName("Modules")>]
val modules: groups: string list list -> model: Module -> Module
/// `fuse_modules_qat`: QAT fusion with PyTorch's default rules (BatchNorm kept in ConvBn / LinearBn groups).
[<CompiledName("ModulesQat")>]
val modulesQat: groups: string list list -> model: Module -> Module
/// Eval fusion driven by the given rule set (e.g. `Rules.defaults |> Rules.add myRule`).
[<CompiledName("ModulesWith")>]
val modulesWith: rules: RuleSet -> groups: string list list -> model: Module -> Module
/// QAT fusion driven by the given rule set.
[<CompiledName("ModulesQatWith")>]
val modulesQatWith: rules: RuleSet -> groups: string list list -> model: Module -> Module
/// Eval fusion returning the refusal as a value.
[<CompiledName("TryModules")>]
val tryModules: groups: string list list -> model: Module -> Result<Module, FusionException>
/// QAT fusion returning the refusal as a value.
[<CompiledName("TryModulesQat")>]
val tryModulesQat: groups: string list list -> model: Module -> Result<Module, FusionException>
/// Every group the default rules can fuse, honouring the dataflow safety check, in the list-of-lists form
/// `modules` takes (on torchvision's quantizable networks: exactly the groups their own fuse_model() fuses).
[<CompiledName("Auto")>]
val auto: model: Module -> string list list
/// Every group the given rules can fuse (e.g. `RuleSet.Extended` for this project's extra patterns).
[<CompiledName("AutoWith")>]
val autoWith: rules: RuleSet -> model: Module -> string list list
/// Folds every per-channel constant `mul`/`add` after a Conv in the forward graphs into the Conv's weights and bias
/// (see GraphConstantFolding); the model itself when there is nothing to fold.
[<CompiledName("FoldConstants")>]
val foldConstants: model: Module -> Module
/// Applies the rule set's graph rules wherever their patterns match in the forward graphs (`RuleSet.Extended` fuses a
/// residual add, and the ReLU after it, into the convolution before it); the model itself when none applies.
/// `model |> Fuse.modulesWith RuleSet.Extended (Fuse.autoWith RuleSet.Extended model) |> Fuse.graphs RuleSet.Extended`.
[<CompiledName("Graphs")>]
val graphs: rules: RuleSet -> model: Module -> Module
/// The rewrites `graphs` performs, in order.
[<CompiledName("FindGraphs")>]
val findGraphs: rules: RuleSet -> model: Module -> GraphFusion list
