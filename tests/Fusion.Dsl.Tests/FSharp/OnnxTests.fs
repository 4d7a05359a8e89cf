/// The F# layer's ONNX functions: a fused model written with `Onnx.write` runs in ONNX Runtime like the engine, and
/// `Onnx.read` gives back a model with the same paths.
module Fusion.Dsl.Tests.FSharp.OnnxTests

open System.IO
open Expecto
open Fusion.Dsl.FSharp
open Fusion.Dsl.Tests.Onnx.OnnxSupport
open Fusion.Dsl.Zoo

[<Tests>]
let tests =
    testList "FSharp.Onnx" [
        test "Onnx.write then ONNX Runtime matches the engine, and Onnx.read keeps the module paths" {
            let zoo = ModelZoo.Create("mobilenet_v2", seed = 4, widthMult = 0.35, numClasses = 10, randomizeBatchNorm = true)
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let path = Path.Combine(dir, "m.onnx")
            let x = randomInput 5 [| 2; 3; 32; 32 |]
            zoo.Model |> Onnx.writeDynamicBatch [ 1; 3; 32; 32 ] path
            expectOrtMatches "Onnx.writeDynamicBatch" path zoo.Model x
            let back = Onnx.read path
            Expect.equal (back |> Model.get "features.1.conv.0.0").TypeName "Conv2d" "a conv's path comes back"
            let fixedPath = Path.Combine(dir, "fixed.onnx")
            back |> Onnx.write [ 2; 3; 32; 32 ] fixedPath
            expectOrtMatches "Onnx.write of the read model" fixedPath zoo.Model x
        }
        test "Onnx.load, Fuse.auto and Onnx.writeBack: the fused file has no BatchNormalization and runs like the original" {
            let zoo = ModelZoo.Create("resnet18", seed = 6, randomizeBatchNorm = true)
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let path = Path.Combine(dir, "r18.onnx")
            zoo.Model |> Onnx.write [ 1; 3; 32; 32 ] path
            let imported = Onnx.load path
            let fused = imported.Model |> Fuse.modules (Fuse.auto imported.Model)
            let back = Path.Combine(dir, "r18-fused.onnx")
            fused |> Onnx.writeBack imported back
            let ops = (Fusion.Dsl.Onnx.Proto.ModelProto.Parser.ParseFrom(File.ReadAllBytes back)).Graph.Node |> Seq.map (fun n -> n.OpType) |> Set.ofSeq
            Expect.isFalse (ops.Contains "BatchNormalization") "every BatchNorm folded"
            expectOrtMatches "Onnx.writeBack" back zoo.Model (randomInput 7 [| 1; 3; 32; 32 |])
        }
    ]
