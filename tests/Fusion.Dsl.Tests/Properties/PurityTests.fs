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
