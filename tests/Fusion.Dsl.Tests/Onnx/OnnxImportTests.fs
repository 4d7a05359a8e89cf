/// Import from ONNX: files written by torch.onnx.export (of the zoo's torchvision networks) and by our exporter become
/// module trees with module paths from the initializer and node names, which fuse by discovery; the fused re-export runs
/// in ONNX Runtime with the unfused file's output. Bad files are refused with the node or tensor named.
module Fusion.Dsl.Tests.Onnx.OnnxImportTests

open System
open System.IO
open Expecto
open Google.Protobuf
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Onnx
open Fusion.Dsl.Onnx.Proto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport
open Fusion.Dsl.Zoo

/// Writes torch.onnx.export files of torchvision's quantizable networks (the zoo's models), in eval mode with random
/// BatchNorm statistics so that no two parameters are equal (torch would share equal initializers), training mode
/// preserved and no constant folding, as the issue specifies.
let private torchExportScript = """
import sys, torch
from torchvision.models import quantization as q
torch.manual_seed(0)
out = sys.argv[1]
for name in sys.argv[2:]:
    m = getattr(q, name)(weights=None, quantize=False).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 64, 64)
    torch.onnx.export(m, x, f"{out}/{name}.onnx", training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                      opset_version=17, input_names=["input"], output_names=["output"])
    if name == "mobilenet_v2":
        # torch's defaults fold every BatchNorm into its Conv: the weights lose their module names.
        torch.onnx.export(m, x, f"{out}/{name}-folded.onnx", opset_version=17, input_names=["input"], output_names=["output"])
"""

let private fuseDiscovered (m: Module) =
    let groups = Fuser.FindFusableGroups m
    groups, Fuser.FuseModules(m, groups |> Seq.map (fun g -> g :> seq<string>))

/// Counts the nodes of an ONNX file by operator (read with the generated protobuf code).
let private opCounts (path: string) =
    let model = ModelProto.Parser.ParseFrom(File.ReadAllBytes path)
    model.Graph.Node |> Seq.countBy (fun n -> n.OpType) |> Map.ofSeq

[<Tests>]
let tests =
    testList "Onnx.Import" [
        test "torch.onnx.export files of the zoo networks import with module paths, fuse by discovery, and the fused re-export runs in ONNX Runtime like the unfused file" {
            requireTorch ()
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let names = [ "resnet18"; "mobilenet_v2"; "resnet50" ]
            let rc, output = runPython torchExportScript (dir :: names)
            if rc <> 0 then failtestf "torch.onnx.export failed:\n%s" output
            let x = randomInput 11 [| 1; 3; 64; 64 |]
            for name in names do
                let source = Path.Combine(dir, name + ".onnx")
                let imported = OnnxModel.Load source
                Expect.sequenceEqual imported.InputShape [| 1; 3; 64; 64 |] $"{name}: the input shape is read"
                let model = imported.Model
                let paths = model.NamedModules() |> Seq.map (fun kv -> kv.Key, kv.Value.TypeName) |> Map.ofSeq
                if name.StartsWith "resnet" then
                    Expect.equal (paths.TryFind "layer1.0.conv1") (Some "Conv2d") $"{name}: layer1.0.conv1 from its initializer name"
                    Expect.equal (paths.TryFind "layer1.0.bn1") (Some "BatchNorm2d") $"{name}: layer1.0.bn1 from its initializer name"
                    Expect.equal (paths.TryFind "fc") (Some "Linear") $"{name}: fc from its initializer name"
                else
                    Expect.equal (paths.TryFind "features.0.0") (Some "Conv2d") $"{name}: features.0.0 from its initializer name"
                    Expect.equal (paths.TryFind "features.0.2") (Some "ReLU") $"{name}: a parameter-free module from its node name"
                let groups, fused = fuseDiscovered model
                let expected = ModelZoo.Create(name).FuseGroups.Count
                Expect.equal groups.Count expected $"{name}: discovery finds as many groups as torchvision's fuse_model"
                let fusedPath = Path.Combine(dir, name + "-fused.onnx")
                OnnxModel.Write(fused, imported.InputShape, fusedPath)
                Expect.isFalse ((opCounts fusedPath).ContainsKey "BatchNormalization") $"{name}: every BatchNorm is folded in the fused file"
                let reference = ortRun source x
                let actual = ortRun fusedPath x
                let tol = OrtTol.abs + OrtTol.rel * reference.MaxAbs()
                Expect.isLessThanOrEqual (actual.MaxAbsDiff reference) tol $"{name}: ONNX Runtime on the fused file against the torch file"
                let ours = Fusion.Dsl.Engine.Forward.Run(model, x)
                Expect.isLessThanOrEqual (ours.MaxAbsDiff reference) tol $"{name}: the engine on the imported model against ONNX Runtime on the torch file"
                // Written back into torch's own graph: only the BatchNormalization nodes go.
                let backPath = Path.Combine(dir, name + "-back.onnx")
                OnnxModel.Write(imported, fused, backPath)
                let before, after = opCounts source, opCounts backPath
                Expect.equal (after |> Map.remove "BatchNormalization") (before |> Map.remove "BatchNormalization") $"{name}: every other node of torch's file stays"
                Expect.isFalse (after.ContainsKey "BatchNormalization") $"{name}: every BatchNorm is folded in the written-back file"
                Expect.isLessThanOrEqual ((ortRun backPath x).MaxAbsDiff reference) tol $"{name}: ONNX Runtime on the written-back file against the torch file"
            // BatchNorms constant-folded away: modules come from node names, and discovery still finds Conv+ReLU.
            let folded = Path.Combine(dir, "mobilenet_v2-folded.onnx")
            let model = OnnxModel.Read folded
            Expect.equal (ModulePath.Get(model, "features.0.0").TypeName) "Conv2d" "features.0.0 from the node name /features/features.0/features.0.0/Conv"
            let groups, fused = fuseDiscovered model
            Expect.isGreaterThan groups.Count 30 "Conv+ReLU groups are found without the BatchNorms"
            let fusedPath = Path.Combine(dir, "folded-fused.onnx")
            OnnxModel.Write(fused, [| 1; 3; 64; 64 |], fusedPath)
            let reference = ortRun folded x
            Expect.isLessThanOrEqual ((ortRun fusedPath x).MaxAbsDiff reference) (OrtTol.abs + OrtTol.rel * reference.MaxAbs()) "the fused re-export runs like the folded torch file"
        }
        test "our own export reads back as a model with the same paths and output" {
            let zoo = ModelZoo.Create("resnet18", seed = 2, randomizeBatchNorm = true)
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let x = randomInput 3 [| 1; 3; 64; 64 |]
            let path = export dir "r18" zoo.Model x None
            let model = OnnxModel.Read path
            for key, kind in [ "layer1.0.conv1", "Conv2d"; "layer1.0.bn1", "BatchNorm2d"; "layer1.0.relu", "ReLU"; "fc", "Linear" ] do
                Expect.equal (ModulePath.Get(model, key).TypeName) kind $"{key} is a {kind}"
            let expected = Fusion.Dsl.Engine.Forward.Run(zoo.Model, x)
            let actual = Fusion.Dsl.Engine.Forward.Run(model, x)
            Expect.isLessThanOrEqual (actual.MaxAbsDiff expected) (Support.Tol.reorderAbs + Support.Tol.reorderRel * expected.MaxAbs()) "same output"
        }
        test "torch's Pad before an AveragePool (all zero for AvgPool2d, the padding of F.avg_pool2d) reads as PyTorch's padded average" {
            Support.requireTool "PyTorch and ONNX (/usr/bin/python3 with python3-torch, python3-onnx)" (Support.pythonHas [ "torch"; "onnx"; "numpy" ])
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let script = """
import sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
class M(nn.Module):
    def __init__(s):
        super().__init__(); s.conv = nn.Conv2d(3, 4, 1); s.pool = nn.AvgPool2d(2, 2)
    def forward(s, x):
        return F.avg_pool2d(s.pool(s.conv(x)), 3, 1, 1)
torch.manual_seed(0)
m, x = M().eval(), torch.randn(1, 3, 8, 8)
torch.onnx.export(m, x, sys.argv[1] + "/ap.onnx", opset_version=17)
np.save(sys.argv[1] + "/x.npy", x.numpy()); np.save(sys.argv[1] + "/y.npy", m(x).detach().numpy())
"""
            let rc, output = runPython script [ dir ]
            if rc <> 0 then failtestf "torch.onnx.export failed:\n%s" output
            let model = OnnxModel.Read(Path.Combine(dir, "ap.onnx"))
            let pools = [ for kv in model.NamedModules() do match kv.Value with :? AvgPool2d as p -> yield p | _ -> () ]
            Expect.equal pools.Length 2 "both pools read as AvgPool2d"
            Expect.isTrue (pools |> List.forall (fun p -> p.CountIncludePad)) "counting the padded zeros, as PyTorch's default does"
            let x, expected = Fusion.Dsl.IO.Npy.Read(Path.Combine(dir, "x.npy")), Fusion.Dsl.IO.Npy.Read(Path.Combine(dir, "y.npy"))
            let actual = Fusion.Dsl.Engine.Forward.Run(model, x)
            Expect.isLessThanOrEqual (actual.MaxAbsDiff expected) (Support.Tol.reorderAbs + Support.Tol.reorderRel * expected.MaxAbs()) "PyTorch's output"
        }
        test "a Pad before a Conv reads back as the convolution's padding mode (reflect, replicate)" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let x = randomInput 6 [| 1; 3; 7; 7 |]
            for mode in [ PaddingMode.Reflect; PaddingMode.Replicate ] do
                let model = Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit 2, paddingMode = mode, seed = 1), Activation.Create(ActivationKind.ReLU))
                let path = export dir (string mode) model x None
                let back = OnnxModel.Read path
                let conv = ModulePath.Get(back, "0") :?> Conv
                Expect.equal conv.PaddingMode mode "the padding mode comes back"
                Expect.sequenceEqual conv.Padding.Amounts [ 2; 2 ] "and its amounts"
                let expected = Fusion.Dsl.Engine.Forward.Run(model, x)
                Expect.isLessThanOrEqual ((Fusion.Dsl.Engine.Forward.Run(back, x)).MaxAbsDiff expected) (Support.Tol.reorderAbs + Support.Tol.reorderRel * expected.MaxAbs()) "same output"
        }
        testList "refusals" [
            let relu = onnxNode "Relu" "act" [ "x" ] [ "y" ]
            test "a truncated file" {
                let zoo = ModelZoo.Create("mobilenet_v2", widthMult = 0.25, numClasses = 10)
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let path = export dir "m" zoo.Model (randomInput 1 [| 1; 3; 32; 32 |]) None
                let bytes = File.ReadAllBytes path
                File.WriteAllBytes(path, bytes[.. bytes.Length / 2])
                let e = Support.throwsOf<ModelFormatException> (fun () -> OnnxModel.Read path |> ignore)
                Expect.stringContains e.Problem "truncated or corrupt" "says the file is broken"
            }
            test "random bytes" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let path = Path.Combine(dir, "noise.onnx")
                let r = Random(5)
                let bytes = Array.zeroCreate<byte> 4096
                r.NextBytes bytes
                File.WriteAllBytes(path, bytes)
                Support.throwsOf<ModelFormatException> (fun () -> OnnxModel.Read path |> ignore) |> ignore
            }
            test "a node without an output, by node name" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                expectImportRefused dir (handMade 17L [ onnxNode "Softmax" "head/softmax" [ "x" ] [] ] [] "x") "head/softmax" "has no output"
            }
            test "a cycle" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let a = onnxNode "Add" "a" [ "x"; "c" ] [ "b" ]
                let c = onnxNode "Relu" "c" [ "b" ] [ "c" ]
                expectImportRefused dir (handMade 17L [ a; c ] [] "c") "a" "cycle"
            }
            test "a dangling input" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                expectImportRefused dir (handMade 17L [ onnxNode "Add" "sum" [ "x"; "ghost" ] [ "y" ] ] [] "y") "sum" "'ghost', which no node"
            }
            test "an opset older than 13" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                expectImportRefused dir (handMade 11L [ relu ] [] "y") null "opset 11 is older than 13"
            }
            test "an external-data initializer whose file is missing, and one reaching past its file" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let external (location: string) (offset: string) =
                    let t = TensorProto(Name = "bias", DataType = 1, DataLocation = TensorProto.Types.DataLocation.External)
                    t.Dims.Add 3L
                    t.ExternalData.Add(StringStringEntryProto(Key = "location", Value = location))
                    t.ExternalData.Add(StringStringEntryProto(Key = "offset", Value = offset))
                    t.ExternalData.Add(StringStringEntryProto(Key = "length", Value = "12"))
                    t
                let add = onnxNode "Add" "plus" [ "x"; "bias" ] [ "y" ]
                expectImportRefused dir (handMade 17L [ add ] [ external "weights.bin" "0" ] "y") "bias" "'weights.bin' does not exist"
                File.WriteAllBytes(Path.Combine(dir, "weights.bin"), Array.zeroCreate<byte> 16)
                expectImportRefused dir (handMade 17L [ add ] [ external "weights.bin" "8" ] "y") "bias" "past the end"
                expectImportRefused dir (handMade 17L [ add ] [ external "../escape.bin" "0" ] "y") "bias" "outside the model's folder"
            }
            test "a tensor whose shape claims more data than the file holds" {
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let t = TensorProto(Name = "huge", DataType = 1, RawData = ByteString.CopyFrom(Array.zeroCreate<byte> 8))
                t.Dims.AddRange [ 1000000L; 1000000L ]
                expectImportRefused dir (handMade 17L [ onnxNode "Add" "plus" [ "x"; "huge" ] [ "y" ] ] [ t ] "y") "huge" "elements"
            }
        ]
    ]
