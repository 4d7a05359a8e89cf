/// Fusion is a pure rewrite: the input model is unchanged, everything outside the groups is shared, an empty plan returns
/// the model itself, and fusion and forward are deterministic to the bit.
module Fusion.Dsl.Tests.Properties.PurityTests

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.FSharp
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests.Properties.PropertySupport

/// The model in the mode the fusion form expects: eval for fuse_modules, training for fuse_modules_qat.
let private prepared isQat (spec: ModelSpec) =
    let m = ModelSpec.build spec
    if isQat then m.Train(true) else m

[<Tests>]
let tests =
    testList "Properties" [
        testList "Purity" [
            law "fusing leaves the input model unchanged (bytes of every tensor, tree, structure)" ModelGen.arbFuseCase <| fun case ->
                for isQat in [ false; true ] do
                    let model = prepared isQat case.Model
                    let before = snapshot model
                    let groups = FuseLists.valid isQat isQat case.Pick case.Model
                    fuse isQat groups model |> ignore
                    check (snapshot model = before) (fun () -> sprintf "snapshot changed\n%s" (describe case.Model groups))
                    Expect.isTrue (model.Equals(prepared isQat case.Model)) "structurally equal to a fresh build"
            law "every subtree outside the fused groups is the same object in the fused model" ModelGen.arbFuseCase <| fun case ->
                for isQat in [ false; true ] do
                    let model = prepared isQat case.Model
                    let groups = FuseLists.valid isQat isQat case.Pick case.Model
                    let fused = fuse isQat groups model
                    let grouped = List.concat groups
                    // Ancestors of a grouped path are rebuilt; the grouped modules are replaced; everything else is shared.
                    let touched (path: string) =
                        path = "" || grouped |> List.exists (fun g -> g = path || g.StartsWith(path + ".", StringComparison.Ordinal))
                    for KeyValue(path, m) in model.NamedModules() do
                        if not (touched path) then
                            check (Object.ReferenceEquals(Fusion.Dsl.FSharp.Model.get path fused, m))
                                (fun () -> sprintf "'%s' is not shared\n%s" path (describe case.Model groups))
            law "ModulePath.ReplaceAll equals the same replacements made one by one, nested and missing paths included" ModelGen.arbFuseCase <| fun case ->
                let model = ModelSpec.build case.Model
                let paths = model.NamedModules() |> Seq.map (fun kv -> kv.Key) |> Seq.filter (fun p -> p <> "") |> Array.ofSeq
                // A pseudo-random walk over the paths (repeats, parents after children, children after parents),
                // replacing with Identity, an empty Sequential, or the module that is there.
                let rng = Random(case.Pick)
                let edits =
                    [ for _ in 1 .. (if paths.Length = 0 then 0 else rng.Next(1, 8)) ->
                        let p = paths.[rng.Next paths.Length]
                        let r =
                            match rng.Next 3 with
                            | 0 -> Fusion.Dsl.Layers.Identity.Create() :> Module
                            | 1 -> Fusion.Dsl.Layers.Sequential.Create() :> Module
                            | _ -> ModulePath.Get(model, p)
                        Collections.Generic.KeyValuePair(p, r) ]
                let attempt f =
                    try Ok(f ()) with
                    | :? ModulePathException as e -> Error("missing " + e.Path)
                    | :? ArgumentException as e -> Error("graph check: " + e.Message)
                let oneByOne = attempt (fun () -> edits |> List.fold (fun m (KeyValue(p, r)) -> ModulePath.Replace(m, p, r)) model)
                let together = attempt (fun () -> ModulePath.ReplaceAll(model, edits))
                match oneByOne, together with
                | Ok a, Ok b ->
                    check (a.Equals b) (fun () -> sprintf "different trees for %A" [ for KeyValue(p, r) in edits -> p, r.TypeName ])
                    let unchanged = edits |> List.forall (fun (KeyValue(p, r)) -> obj.ReferenceEquals(ModulePath.Get(model, p), r))
                    if unchanged then check (obj.ReferenceEquals(b, model)) (fun () -> "replacing modules by themselves must return the root")
                | Error a, Error b when a.StartsWith "missing" -> check (a = b) (fun () -> sprintf "'%s' one by one, '%s' together" a b)
                // One by one, every intermediate tree's graphs are checked; ReplaceAll checks only the final tree, which
                // later replacements may have repaired (putting the original module back).
                | Error a, _ when a.StartsWith "graph check" -> ()
                | a, b -> failtestf "one by one gave %A, together %A" (Result.map (fun _ -> "a tree") a) (Result.map (fun _ -> "a tree") b)
            law "an empty plan returns the very same model" ModelGen.arbModelSpec <| fun spec ->
                let model = ModelSpec.build spec
                Expect.isTrue (Object.ReferenceEquals(FusionPlan.Empty.Apply model, model)) "FusionPlan.Empty"
                for isQat in [ false; true ] do
                    let plan = FusionPlan.Create(Seq.empty, isQat)
                    Expect.isTrue (Object.ReferenceEquals(plan.Apply model, model)) "a plan created with no groups"
            law "fusion and forward are deterministic to the bit, whatever the thread count" ModelGen.arbFuseCase <| fun case ->
                for isQat in [ false; true ] do
                    let model = prepared isQat case.Model
                    let groups = FuseLists.valid isQat isQat case.Pick case.Model
                    let a, b = fuse isQat groups model, fuse isQat groups (prepared isQat case.Model)
                    Expect.isTrue (a.Equals b) "same fused model (structure and tensor bits)"
                    let x = ModelSpec.input case.Model
                    let y = forward a x
                    Expect.isTrue (y.Equals(forward a x)) "same forward twice"
                    Expect.isTrue (y.Equals(forward b x)) "same forward of the two fusions"
                    Expect.isTrue (y.Equals(Forward.Run(a, x, ForwardOptions(Threads = 1)))) "same forward on one thread"
        ]
    ]
