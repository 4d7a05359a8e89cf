/// The breadth table's CI subset (tools/breadth/run.py --ci): small torchvision networks through the whole workflow
/// (export, fusion auto --out, PyTorch's verify, the engine unfused and fused against PyTorch, ONNX import). Every row
/// must export, fuse and verify in PyTorch; the engine may refuse an operation it does not compute (said as
/// 'unsupported') but must never compute a wrong output; the networks it fully runs today must stay fully green.
module Fusion.Dsl.Tests.Interop.BreadthTests

open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Interop.InteropSupport

/// What a network must reach: everything (the engine computes it and ONNX imports it), or carried (the engine may
/// refuse an opaque operation by name, ONNX import is not asserted: issue 22's remaining operators).
type private Reach = Everything | Carried

let private expected =
    [ "resnet18", Everything; "mobilenet_v3_small", Everything; "squeezenet1_1", Everything
      "efficientnet_b0", Carried; "convnext_tiny", Carried; "shufflenet_v2_x0_5", Carried; "regnet_y_400mf", Carried ]

let private workDir = runFolder "fusion-breadth-"

let private rows =
    lazy (
        let json = Path.Combine(workDir.Value, "rows.json")
        let code, out, err =
            runPython [ Path.Combine(Support.repoRoot, "tools", "breadth", "run.py"); "--ci"; "--size"; "64"; "--work"; workDir.Value; "--json"; json
                        "--fusion"; Path.Combine(System.AppContext.BaseDirectory, "fusion.dll") ]
        if code <> 0 then failwithf "run.py failed (exit %d): %s\n%s" code out err
        use doc = JsonDocument.Parse(File.ReadAllText json)
        [ for r in doc.RootElement.EnumerateArray() ->
            r.GetProperty("network").GetString() |> nonNull,
            [ for p in r.EnumerateObject() -> p.Name, p.Value.ToString() ] |> Map.ofList ])

[<Tests>]
let tests =
    testSequenced <| testList "Interop.Breadth" [
        for network, reach in expected ->
            test (sprintf "%s: exports, fuses, verifies in PyTorch, and the engine is right or says what it does not compute" network) {
                needTorch ()
                let row = rows.Value |> List.find (fun (n, _) -> n = network) |> snd
                let cell name = row |> Map.tryFind name |> Option.defaultValue "(missing)"
                Expect.equal (cell "export") "ok" "export"
                let auto = cell "auto"
                Expect.isTrue (auto = "verified" || auto.StartsWith "unverified (") $"fusion auto --out: {auto}"
                Expect.equal (cell "torch") "equivalent" "PyTorch's fuse_modules with our weights computes the original"
                for step in [ "engine"; "engine_fused" ] do
                    let got = cell step
                    match reach with
                    | Everything -> Expect.stringStarts got "ok (" $"{step} equals PyTorch"
                    | Carried -> Expect.isTrue (got.StartsWith "ok (" || got.StartsWith "unsupported (") $"{step}: right or refused by name, got {got}"
                if reach = Everything then
                    Expect.equal (cell "auto") "verified" "the engine verified the fusion"
                    Expect.equal (cell "onnx") "ok" "torch.onnx.export's file imports, fuses and writes"
            }
    ]
