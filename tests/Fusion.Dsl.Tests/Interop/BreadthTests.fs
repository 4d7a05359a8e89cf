/// The breadth table's CI subset (tools/breadth/run.py --ci): small torchvision networks through the whole workflow
/// (export, fusion auto --out, PyTorch's verify, the engine unfused and fused against PyTorch, torch.onnx.export's files
/// fused and written back, run in ONNX Runtime against the originals). Every row must pass every step.
module Fusion.Dsl.Tests.Interop.BreadthTests

open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Interop.InteropSupport

let private expected =
    [ "resnet18"; "mobilenet_v3_small"; "squeezenet1_1"; "efficientnet_b0"; "convnext_tiny"; "shufflenet_v2_x0_5"; "regnet_y_400mf"
      "quantized_mobilenet_v2"; "quantized_googlenet" ]

let private workDir = runFolder "fusion-breadth-"

let private rows =
    lazy (
        let json = Path.Combine(workDir.Value, "rows.json")
        let code, out, err =
            runPython [ Path.Combine(Support.repoRoot, "tools", "breadth", "run.py"); "--ci"; "--size"; "64"; "--work"; workDir.Value; "--json"; json
                        "--fusion"; Path.Combine(System.AppContext.BaseDirectory, "fusion.dll"); "--no-ort" ]
        if code <> 0 then failwithf "run.py failed (exit %d): %s\n%s" code out err
        use doc = JsonDocument.Parse(File.ReadAllText json)
        [ for r in doc.RootElement.EnumerateArray() ->
            r.GetProperty("network").GetString() |> nonNull,
            [ for p in r.EnumerateObject() -> p.Name, p.Value.ToString() ] |> Map.ofList ])

[<Tests>]
let tests =
    testSequenced <| testList "Interop.Breadth" [
        for network in expected ->
            test (sprintf "%s: exports, fuses, verifies in PyTorch, and the engine is right or says what it does not compute" network) {
                needTorch ()
                let row = rows.Value |> List.find (fun (n, _) -> n = network) |> snd
                let cell name = row |> Map.tryFind name |> Option.defaultValue "(missing)"
                Expect.equal (cell "export") "ok" "export"
                let auto = cell "auto"
                Expect.isTrue (auto = "verified" || auto.StartsWith "unverified (") $"fusion auto --out: {auto}"
                Expect.equal (cell "torch") "equivalent" "PyTorch's fuse_modules with our weights computes the original"
                for step in [ "engine"; "engine_fused" ] do
                    Expect.stringStarts (cell step) "ok (" $"{step} equals PyTorch"
                Expect.equal auto "verified" "the engine verified the fusion"
                Expect.equal (cell "onnx") "ok" "both torch.onnx.export files import, fuse and write back"
                // ONNX Runtime on each written-back file against torch's file, on the input run.py gave PyTorch.
                let x = Fusion.Dsl.IO.Npy.Read(Path.Combine(workDir.Value, network + "-x.npy"))
                for suffix in [ ""; "-bn" ] do
                    let original = Path.Combine(workDir.Value, network + suffix + ".onnx")
                    let expectedY = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun original x
                    let actual = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun (Path.Combine(workDir.Value, network + suffix + "-fused.onnx")) x
                    let tol = Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.abs + Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.rel * expectedY.MaxAbs()
                    Expect.isLessThanOrEqual (actual.MaxAbsDiff expectedY) tol $"ONNX Runtime: {network}{suffix}-fused.onnx computes what torch's file does"
                // The fused model exported afresh (every operation it uses has an ONNX form) runs like torch's file.
                let fused = Fusion.Dsl.IO.ModelFile.Read(Path.Combine(workDir.Value, network + "-fused.json"))
                let fresh = Path.Combine(workDir.Value, network + "-fresh.onnx")
                Fusion.Dsl.Onnx.OnnxModel.Write(fused, x.Shape.ToArray(), fresh)
                let torchY = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun (Path.Combine(workDir.Value, network + ".onnx")) x
                let freshY = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun fresh x
                let tol = Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.abs + Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.rel * torchY.MaxAbs()
                Expect.isLessThanOrEqual (freshY.MaxAbsDiff torchY) tol $"ONNX Runtime: the fused model exported with OnnxModel.Write computes what torch's file does"
            }
    ]
