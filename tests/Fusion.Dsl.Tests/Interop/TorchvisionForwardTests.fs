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
      "roundtrip_models", "tiny_vit", 32
      "roundtrip_models", "tiny_maxvit", 32 ]

/// Every network exported, with PyTorch's input and output, by one Python process.
let private exported =
    lazy (
        let specs = [ for f, n, s in networks -> $"{f}:{n}:{s}" ]
        let code, _, err = runPython (Path.Combine(interopDir, "torchvision_forward.py") :: workDir.Value :: specs)
        if code <> 0 then failwithf "export failed (exit %d): %s" code err)

[<Tests>]
let tests =
    testSequenced <| testList "Interop.TorchvisionForward" [
        for _, name, _ in networks do
          yield
            test $"{name}: the engine computes PyTorch's output, unfused and after fusion auto (which verifies it itself)" {
                needTorch ()
                exported.Force()
                let dir = Path.Combine(workDir.Value, name)
                let x, expected = Npy.Read(Path.Combine(dir, "x.npy")), Npy.Read(Path.Combine(dir, "y.npy"))
                expectClose "unfused" Support.Tol.networkRel Support.Tol.networkAbs (Forward.Run(ModelFile.Read dir, x)) expected
                let fused = Path.Combine(workDir.Value, name + "-fused.json")
                let code, out, err = CliTests.run [ "auto"; dir; "--out"; fused ]
                Expect.equal code 0 (out + err)
                Expect.stringContains out "max |fused - unfused|" "fusion auto checked the fused model in the engine"
                expectClose "fused" Support.Tol.networkRel Support.Tol.networkAbs (Forward.Run(ModelFile.Read fused, x)) expected
            }
        yield test "tiny_maxvit fused and exported afresh (Gather of its tensor constants, Einsum, Transpose, Tanh) runs in ONNX Runtime as in PyTorch" {
            needTorch ()
            exported.Force()
            let dir = Path.Combine(workDir.Value, "tiny_maxvit")
            let x, expected = Npy.Read(Path.Combine(dir, "x.npy")), Npy.Read(Path.Combine(dir, "y.npy"))
            let fused, onnx = Path.Combine(workDir.Value, "tiny_maxvit-fused2.json"), Path.Combine(workDir.Value, "tiny_maxvit.onnx")
            let code, out, err = CliTests.run [ "auto"; dir; "--out"; fused ]
            Expect.equal code 0 (out + err)
            Fusion.Dsl.Onnx.OnnxModel.Write(ModelFile.Read fused, x.Shape.ToArray(), onnx)
            let y = Fusion.Dsl.Tests.Onnx.OnnxSupport.ortRun onnx x
            let tol = Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.abs + Fusion.Dsl.Tests.Onnx.OnnxSupport.OrtTol.rel * expected.MaxAbs()
            Expect.isLessThanOrEqual (y.MaxAbsDiff expected) tol "ONNX Runtime on our export computes PyTorch's output"
        }
    ]
