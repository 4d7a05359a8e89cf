/// The export law over generated models: for every model of the property harness (and its eval fusion), ONNX Runtime
/// running the exported file gives the engine's forward.
module Fusion.Dsl.Tests.Onnx.OnnxPropertyTests

open System.IO
open Expecto
open FsCheck
open FsCheck.FSharp
open Fusion.Dsl.FSharp
open Fusion.Dsl.Onnx
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport
open Fusion.Dsl.Tests.Properties.PropertySupport

/// ONNX Runtime against the engine on a generated model, per layer relative to the output magnitude: as for eval fusion
/// (Tol.generatedEquivRelPerLayer), a BatchNorm of a generated model scales by up to ~7 and so amplifies the float32
/// reordering of the layer before it; a wrong operator or weight is off by 1e-1 or more.
let private relPerLayer = 2e-5

/// Each law's models cost an ONNX Runtime session; at most 100 keep the added test time modest.
let private config = { config with maxTest = min runs 100 }

let private expectSame (dir: string) (name: string) (model: Fusion.Dsl.Algebra.Module) (x: Fusion.Dsl.Tensors.Tensor) layers describe =
    let path = Path.Combine(dir, name + ".onnx")
    OnnxModel.Write(model, x.Shape.ToArray(), path)
    let expected = forward model x
    let actual = ortRun path x
    check (actual.Shape.ToArray() = expected.Shape.ToArray()) (fun () -> sprintf "%s: shape %A, engine %A\n%s" name (actual.Shape.ToArray()) (expected.Shape.ToArray()) (describe ()))
    let tol = OrtTol.abs + relPerLayer * float (max 1 layers) * expected.MaxAbs()
    let err = actual.MaxAbsDiff expected
    check (err <= tol) (fun () -> sprintf "%s: max |ONNX Runtime - engine| = %g exceeds %g\n%s" name err tol (describe ()))

[<Tests>]
let tests =
    testList "Onnx.Properties" [
        testPropertyWithConfig config "export then ONNX Runtime equals the engine's forward, for the generated model and its eval fusion"
            (Prop.forAll ModelGen.arbFuseCase (fun case ->
                // Batch statistics have no inference graph (refused by the exporter); the law runs on tracked statistics.
                let spec = case.Model |> ModelSpec.mapBatchNorms (fun b -> { b with TrackRunningStats = true })
                let model = ModelSpec.build spec
                let groups = FuseLists.valid false false case.Pick spec
                let fused = fuse false groups model
                let x = ModelSpec.input spec
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let layers = ModelSpec.size spec
                expectSame dir "model" model x layers (fun () -> describe spec [])
                expectSame dir "fused" fused x layers (fun () -> describe spec groups)))
        // Circular padding is exported as slices and a concatenation, which the importer does not read back (a known gap);
        // those models are left out of this law (the export law above covers them).
        testPropertyWithConfig config "export then import gives a model with the engine's forward (models without circular padding)"
            (Prop.forAll ModelGen.arbModelSpec (fun spec0 ->
              not ((sprintf "%A" spec0).Contains "Circular") ==> lazy (
                let spec = spec0 |> ModelSpec.mapBatchNorms (fun b -> { b with TrackRunningStats = true })
                let model = ModelSpec.build spec
                let x = ModelSpec.input spec
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let path = Path.Combine(dir, "m.onnx")
                OnnxModel.Write(model, x.Shape.ToArray(), path)
                let back = OnnxModel.Read path
                let expected = forward model x
                let err = (forward back x).MaxAbsDiff expected
                let tol = Support.Tol.reorderAbs + Support.Tol.reorderRel * float (max 1 (ModelSpec.size spec)) * expected.MaxAbs()
                check (err <= tol) (fun () -> sprintf "max |imported - original| = %g exceeds %g\n%s" err tol (describe spec [])))))
    ]
