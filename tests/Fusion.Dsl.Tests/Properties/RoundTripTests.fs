/// Generated models (and their fused forms) survive the model format: ModelFile.Write then Read gives an equal model.
module Fusion.Dsl.Tests.Properties.RoundTripTests

open System
open System.IO
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.FSharp
open Fusion.Dsl.IO
open Fusion.Dsl.Tests.Properties.PropertySupport

/// Writes and reads back in a fresh temporary folder, removed afterwards.
let private roundTrip (model: Module) (inputShape: int[]) =
    let dir = Path.Combine(Path.GetTempPath(), "fusion-props-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory dir |> ignore
    try
        let path = Path.Combine(dir, "model.json")
        ModelFile.Write(path, model, inputShape) |> ignore
        ModelFile.ReadContent path
    finally
        Directory.Delete(dir, true)

[<Tests>]
let tests =
    testList "Properties" [
        testList "RoundTrip" [
            // The model format keeps the root's forward graph only, so the models are the traced (torch.fx-like) form.
            law "a generated model, its eval fusion and its QAT fusion read back equal, with their input shape, and compute the same"
                ModelGen.arbFuseCase <| fun case ->
                let spec = { case.Model with Traced = true }
                let x = ModelSpec.input spec
                let model = ModelSpec.build spec
                let forms =
                    [ "model", model
                      "eval-fused", fuse false (FuseLists.valid false false case.Pick spec) model
                      "qat-fused", fuse true (FuseLists.valid true true case.Pick spec) (model.Train(true)) ]
                for name, m in forms do
                    let back = roundTrip m (Array.ofSeq x.Dimensions)
                    check (back.Model.Equals m) (fun () -> sprintf "%s read back differs\n%A" name spec)
                    Expect.sequenceEqual back.InputShape x.Dimensions (sprintf "%s: input shape read back" name)
                    Expect.isTrue ((forward back.Model x).Equals(forward m x)) (sprintf "%s: the model read back computes bit for bit the same" name)
        ]
    ]
