/// Fused and unfused networks compute the same function: within a named tolerance for eval fusion (BatchNorm folded into
/// float32 weights), bit for bit for QAT fusion in training mode (the modules are kept as they are).
module Fusion.Dsl.Tests.Properties.EquivalenceTests

open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.FSharp
open Fusion.Dsl.Layers
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Properties.PropertySupport

/// Every group was rewritten: the first position holds the fused result, the others are Identity.
let private expectRewritten (groups: string list list) (fused: Module) =
    for g in groups do
        let head = Fusion.Dsl.FSharp.Model.get g.Head fused
        Expect.isTrue (head :? FusedModule || head :? Conv || head :? Linear) (sprintf "%s holds the fused module, got %s" g.Head head.TypeName)
        for p in g.Tail do
            Expect.isTrue (Fusion.Dsl.FSharp.Model.get p fused :? Identity) (sprintf "%s became Identity" p)

[<Tests>]
let tests =
    testList "Properties" [
        testList "Equivalence" [
            // A BatchNorm without running statistics normalises with the batch's own statistics (here as few as 2 values per
            // channel): it divides by their spread, so it amplifies any rounding difference before it without bound and no
            // output-relative tolerance can hold. It is not what fusion changes, so this law runs on models whose BatchNorms
            // track statistics; the QAT, purity, round-trip and error laws keep the others.
            law "eval fusion: the fused forward matches the unfused one within the per-layer tolerance of the output magnitude"
                ModelGen.arbFuseCase <| fun case ->
                let spec = case.Model |> ModelSpec.mapBatchNorms (fun b -> { b with TrackRunningStats = true })
                let model = ModelSpec.build spec
                let groups = FuseLists.valid false false case.Pick spec
                let fused = fuse false groups model
                expectRewritten groups fused
                let x = ModelSpec.input spec
                let expected, actual = forward model x, forward fused x
                let tol =
                    Support.Tol.equivAbs
                    + Support.Tol.generatedEquivRelPerLayer * float (max 1 (ModelSpec.size spec)) * expected.MaxAbs()
                let err = actual.MaxAbsDiff expected
                check (err <= tol) (fun () -> sprintf "max |fused - unfused| = %g exceeds %g\n%s" err tol (describe spec groups))
            law "QAT fusion in training mode: the fused forward equals the unfused one bit for bit" ModelGen.arbFuseCase <| fun case ->
                let spec = case.Model
                let model = (ModelSpec.build spec).Train(true)
                let groups = FuseLists.valid true true case.Pick spec
                let fused = fuse true groups model
                expectRewritten groups fused
                let x = ModelSpec.input spec
                let expected, actual = forward model x, forward fused x
                check (actual.Equals expected)
                    (fun () -> sprintf "outputs differ (max %g)\n%s" (actual.MaxAbsDiff expected) (describe spec groups))
        ]
    ]
