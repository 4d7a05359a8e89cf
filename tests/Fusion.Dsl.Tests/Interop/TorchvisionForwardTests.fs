/// The engine computes torchvision's networks as PyTorch does: exported by the Python exporter's own command (with
/// the operations and library modules each traces to: Sigmoid, stochastic_depth, LayerNorm, permute, GELU, mean,
/// channel shuffle, MultiheadAttention, shifted window attention, maxvit's tensor constants and einsum), run unfused and after `fusion auto`, against PyTorch's output on one input.
module Fusion.Dsl.Tests.Interop.TorchvisionForwardTests

open System.IO
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.Interop.InteropSupport

let private workDir = runFolder "fusion-torchvision-"

/// (factory, name, image size): small inputs keep the whole list within seconds.
let private networks =
    [ "breadth_models", "efficientnet_b0", 64
      "breadth_models", "convnext_tiny", 64
      "breadth_models", "mnasnet0_5", 64
      "breadth_models", "shufflenet_v2_x0_5", 64
      "breadth_models", "swin_t", 64
      "breadth_models", "swin_v2_t", 64
      "breadth_models", "resnet18", 64
      "breadth_models", "mobilenet_v2", 64
      "roundtrip_models", "tiny_vit", 32
      "roundtrip_models", "tiny_maxvit", 32 ]

/// Every network exported, with PyTorch's input and output, by one Python process.
let private exported =
    lazy (
        let specs = [ for f, n, s in networks -> $"{f}:{n}:{s}" ]
        let code, _, err = runPython (Path.Combine(interopDir, "torchvision_forward.py") :: workDir.Value :: specs)
        if code <> 0 then failwithf "export failed (exit %d): %s" code err)

/// The exported network's folder, PyTorch's input and PyTorch's output.
let private network (name: string) =
    needTorch ()
    exported.Force()
    let dir = Path.Combine(workDir.Value, name)
    dir, Npy.Read(Path.Combine(dir, "x.npy")), Npy.Read(Path.Combine(dir, "y.npy"))

/// `fusion auto DIR [extra] --out FILE`, which must succeed; returns its standard output.
let private auto (dir: string) (extra: string list) (file: string) =
    let code, out, err = CliTests.run ([ "auto"; dir ] @ extra @ [ "--out"; file ])
    Expect.equal code 0 (out + err)
    out

/// ONNX Runtime, on our export of `model`, computes PyTorch's output.
let private expectOrtComputesPyTorch (model: Fusion.Dsl.Algebra.Module) (onnx: string) (x: Fusion.Dsl.Tensors.Tensor) (expected: Fusion.Dsl.Tensors.Tensor) =
    Fusion.Dsl.Onnx.OnnxModel.Write(model, x.Shape.ToArray(), onnx)
    let y = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun onnx x
    let tol = Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.abs + Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.rel * expected.MaxAbs()
    Expect.isLessThanOrEqual (y.MaxAbsDiff expected) tol "ONNX Runtime on our export computes PyTorch's output"

[<Tests>]
let tests =
    testSequenced <| testList "Interop.TorchvisionForward" [
        for _, name, _ in networks do
          yield
            test $"{name}: the engine computes PyTorch's output, unfused and after fusion auto (which verifies it itself)" {
                let dir, x, expected = network name
                expectClose "unfused" Support.Tol.networkRel Support.Tol.networkAbs (Forward.Run(ModelFile.Read dir, x)) expected
                let fused = Path.Combine(workDir.Value, name + "-fused.json")
                let out = auto dir [] fused
                Expect.stringContains out "max |fused - unfused|" "fusion auto checked the fused model in the engine"
                expectClose "fused" Support.Tol.networkRel Support.Tol.networkAbs (Forward.Run(ModelFile.Read fused, x)) expected
            }
        // resnet18 has 8 BasicBlocks, each ending in relu(out + identity); mobilenet_v2 has 10 inverted residuals with x + conv(x).
        for name, rule, kind, count in [ "resnet18", "conv2d_add_relu", "ConvAddReLU2d", 8; "mobilenet_v2", "conv2d_add", "ConvAdd2d", 10 ] do
          yield
            test $"{name} with the extended rules: its residual joins fused into the convolutions ({kind}) compute PyTorch's output, in the engine and in ONNX Runtime" {
                let dir, x, expected = network name
                let fused, onnx = Path.Combine(workDir.Value, name + "-extended.json"), Path.Combine(workDir.Value, name + "-extended.onnx")
                let out = auto dir [ "--rules"; "extended" ] fused
                Expect.stringContains out rule $"fusion auto reports the {rule} rewrites"
                let model = ModelFile.Read fused
                let joins = model.NamedModules() |> Seq.filter (fun kv -> kv.Value.TypeName = kind) |> Seq.length
                Expect.equal joins count $"every residual join became a {kind}"
                expectClose "fused with the extended rules" Support.Tol.networkRel Support.Tol.networkAbs (Forward.Run(model, x)) expected
                expectOrtComputesPyTorch model onnx x expected
                // As a checkpoint its keys are this project's layout: the CLI says no PyTorch model takes them.
                let out2 = auto dir [ "--rules"; "extended" ] (Path.Combine(workDir.Value, name + "-extended.pt"))
                Expect.stringContains out2 "fusion(s) PyTorch has no module for" "the note says PyTorch has no module for them"
            }
        yield test "tiny_maxvit fused and exported afresh (Gather of its tensor constants, Einsum, Transpose, Tanh) runs in ONNX Runtime as in PyTorch" {
            let dir, x, expected = network "tiny_maxvit"
            let fused, onnx = Path.Combine(workDir.Value, "tiny_maxvit-fused2.json"), Path.Combine(workDir.Value, "tiny_maxvit.onnx")
            auto dir [] fused |> ignore
            expectOrtComputesPyTorch (ModelFile.Read fused) onnx x expected
        }
    ]
