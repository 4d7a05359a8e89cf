/// Shared configuration of the property laws: how many models per law (FUSION_PROPERTY_RUNS, default 200), replaying a
/// failure (FUSION_PROPERTY_REPLAY="seed,gamma", as printed by a failing law), and helpers over generated models.
module Fusion.Dsl.Tests.Properties.PropertySupport

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.FSharp
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors

/// Generated models per law: FUSION_PROPERTY_RUNS, default 200 (what CI runs).
let runs =
    match Environment.GetEnvironmentVariable "FUSION_PROPERTY_RUNS" with
    | null | "" -> 200
    | s ->
        match Int32.TryParse s with
        | true, n when n > 0 -> n
        | _ -> failwithf "FUSION_PROPERTY_RUNS must be a positive number of generated models, got '%s'" s

/// FUSION_PROPERTY_REPLAY="seed,gamma" (or "seed,gamma,size"): replays the run FsCheck reported for a failure
/// (same models, same shrinking). The tuple Expecto prints after "Focus on error", such as
/// `(8424310354456274810UL, 10928847317855962811UL, Some 1)`, can be pasted as it is.
let replay =
    match Environment.GetEnvironmentVariable "FUSION_PROPERTY_REPLAY" with
    | null | "" -> None
    | s ->
        let cleaned = s.Replace("UL", "").Replace("Some", "").Replace("None", "")
        let parts = cleaned.Trim([| '('; ')'; ' ' |]).Split(',') |> Array.map (fun p -> p.Trim()) |> Array.filter ((<>) "")
        let number (p: string) = match UInt64.TryParse p with | true, v -> Some v | _ -> None
        match parts |> Array.map number with
        | [| Some seed; Some gamma |] -> Some(seed, gamma, None)
        | [| Some seed; Some gamma; Some size |] when size <= uint64 Int32.MaxValue -> Some(seed, gamma, Some(int size))
        | _ ->
            failwithf "FUSION_PROPERTY_REPLAY must be 'seed,gamma' or 'seed,gamma,size' as printed by a failing law (e.g. 1234567,890123), got '%s'" s

/// The laws' FsCheck configuration: `runs` models, sizes up to 40 (the generator's own cap), replay when asked.
let config =
    { FsCheckConfig.defaultConfig with
        maxTest = runs
        endSize = 40
        replay = replay }

/// A law over generated values: `testPropertyWithConfig` with the shared configuration.
let law name (arb: Arbitrary<'a>) (body: 'a -> unit) = testPropertyWithConfig config name (Prop.forAll arb body)

/// Forward on every core.
let forward (model: Module) (x: Tensor) = Forward.Run(model, x)

/// Fuses with the public facade (`fuse_modules` / `fuse_modules_qat`); an empty list is the empty plan.
let fuse isQat (groups: string list list) (model: Module) =
    match groups with
    | [] -> Rules.FusionPlan.Empty.Apply model
    | gs ->
        let gs = gs |> Seq.map Seq.ofList
        if isQat then Fuser.FuseModulesQat(model, gs) else Fuser.FuseModules(model, gs)

/// A snapshot independent of the module objects: every state tensor's bytes (safetensors) and the tree as text.
let snapshot (model: Module) =
    let bytes = SafeTensors.Serialize(model.StateDict())
    let tree =
        model.NamedModules()
        |> Seq.map (fun kv -> sprintf "%s %s %b %O" kv.Key kv.Value.TypeName kv.Value.Training kv.Value)
        |> String.concat "\n"
    bytes, tree

/// Fails with the message only when the condition is false (the messages print whole model descriptions, which is slow).
let check (condition: bool) (message: unit -> string) = if not condition then failtest (message ())

/// Describes a case for failure messages: the model description and the groups.
let describe (spec: ModelSpec) (groups: string list list) = sprintf "groups %A\nmodel %A" groups spec
