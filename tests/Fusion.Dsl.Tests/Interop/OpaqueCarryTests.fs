/// Any traceable operation is carried: a model holding library modules and torch calls that Fusion.Dsl does not model
/// exports from PyTorch, reads, fuses around them, writes them back unchanged, and PyTorch checks the fused result; the
/// engine refuses only when asked to compute them, naming the node.
module Fusion.Dsl.Tests.Interop.OpaqueCarryTests

open System.IO
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Graphs
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Interop.InteropSupport

let private workDir = runFolder "fusion-opaque-"

/// OpaqueNet exported once per run, with PyTorch's print(model) beside it.
let private exported =
    lazy (
        let dir = Path.Combine(workDir.Value, "opaque")
        let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "roundtrip_models:opaque_net"; "--input-shape"; "1,3,8,8"; "--out"; dir ]
        if code <> 0 then failwithf "export failed (exit %d): %s" code err
        let code, out, err = runPython [ "-c"; "import roundtrip_models as r; print(r.opaque_net())" ]
        if code <> 0 then failwithf "print(model) failed: %s" err
        dir, out.TrimEnd())

[<Tests>]
let tests =
    testSequenced <| testList "Interop.OpaqueCarry" [
        test "LayerNorm, GELU, Softsign, torch.sigmoid, permute, torch.roll and a slice index are carried: kept in the tree and graph, printed as PyTorch prints them" {
            needTorch ()
            let dir, torchPrint = exported.Value
            let m = ModelFile.Read dir
            let norm = ModulePath.Get(m, "norm")
            Expect.isTrue (norm :? OpaqueModule) "LayerNorm is an opaque module"
            Expect.sequenceEqual norm.State.Names [ "weight"; "bias" ] "its state is kept"
            let graph = (m :?> UserModule).Forward |> nonNull
            let targets = [ for n in graph.Nodes -> n.Target ]
            Expect.contains targets (nonNull "sigmoid") "torch.sigmoid under the table's name"
            Expect.contains targets (nonNull "torch.roll") "torch.roll, outside the table, under its qualified name"
            Expect.contains targets (nonNull "permute") "the permute method"
            Expect.isTrue (ModulePath.Get(m, "squash") :? OpaqueModule) "Softsign is an opaque module"
            let index = graph.Nodes |> Seq.find (fun n -> n.Target = "getitem")
            Expect.stringContains (string index.Args.[1]) "..." "the index keeps its Ellipsis"
            Expect.equal (ModuleRepr.Print m) torchPrint "print(model) as PyTorch prints it"
        }
        test "fusion auto --out fuses around them, says the result was not verified here, and PyTorch's verify finds it equivalent" {
            needTorch ()
            let dir, _ = exported.Value
            let fused = Path.Combine(workDir.Value, "opaque-fused.json")
            let code, out, err = CliTests.run [ "auto"; dir; "--out"; fused ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "stem.0, stem.1, stem.2" "the stem fused"
            Expect.stringContains out "head.0, head.1" "the head fused"
            Expect.stringContains out "not verified here" "says it was not verified"
            Expect.stringContains out "python3 -m fusion_torch verify" "says how to verify"
            let reread = ModelFile.Read fused
            Expect.equal (ModulePath.Get(reread, "norm")) (ModulePath.Get(ModelFile.Read dir, "norm")) "the opaque module is written back unchanged"
            let code, out, err = runPython [ "-m"; "fusion_torch"; "verify"; dir; fused ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out ": equivalent" "PyTorch's own fuse_modules with our weights computes the original"
        }
        test "the engine refuses to compute an opaque operation or module by node and type, as unsupported rather than wrong" {
            needTorch ()
            let dir, _ = exported.Value
            let m = ModelFile.Read dir
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(m, Tensor.Zeros(1, 3, 8, 8)) |> ignore)
            Expect.isTrue e.Unsupported "marked unsupported"
            Expect.stringContains e.Message "graph node 'roll'" "names the first opaque node, after the carried ones it computed"
            Expect.stringContains e.Message "torch.roll" "names the operation"
            let e2 = Support.throwsOf<ForwardException> (fun () -> Forward.Run(ModulePath.Get(m, "squash"), Tensor.Zeros(1, 6, 6, 4)) |> ignore)
            Expect.isTrue e2.Unsupported "marked unsupported"
            Expect.stringContains e2.Message "torch.nn.Softsign" "names the module's type"
            let y = Forward.Run(ModulePath.Get(m, "norm"), Tensor.Zeros(1, 6, 6, 4))
            Expect.sequenceEqual y.Dimensions [ 1; 6; 6; 4 ] "a carried LayerNorm is computed"
        }
        test "the Python exporter names the operations and their parameters as the .NET table does" {
            needTorch ()
            let code, out, err = runPython [ "-c"; "import json, fusion_torch.graph as g; print(json.dumps(g.schema(), separators=(',', ':')))" ]
            Expect.equal code 0 err
            use python = System.Text.Json.JsonDocument.Parse(out)
            use dotnet = System.Text.Json.JsonDocument.Parse(GraphOps.SchemaJson())
            Expect.equal (python.RootElement.GetRawText()) (dotnet.RootElement.GetRawText()) "same operations, same parameters, same order"
        }
        test "a shape unpacked from x.size() traces (torch 1.13 under Python 3.11 cannot on its own) and is carried" {
            needTorch ()
            let dir = Path.Combine(workDir.Value, "shuffle")
            let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "roundtrip_models:ChannelShuffle"; "--input-shape"; "1,3,6,6"; "--out"; dir ]
            Expect.equal code 0 err
            let graph = ((ModelFile.Read dir) :?> UserModule).Forward |> nonNull
            let targets = [ for n in graph.Nodes -> n.Target ]
            Expect.contains targets (nonNull "size") "x.size() recorded"
            Expect.equal (targets |> List.filter ((=) (nonNull "getitem")) |> List.length) 4 "unpacked into four values"
            let fused = Path.Combine(workDir.Value, "shuffle-fused.json")
            let code, out, err = CliTests.run [ "auto"; dir; "--out"; fused ]
            Expect.equal code 0 (out + err)
            let code, out, err = runPython [ "-m"; "fusion_torch"; "verify"; dir; fused ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out ": equivalent" "PyTorch agrees"
        }
    ]
