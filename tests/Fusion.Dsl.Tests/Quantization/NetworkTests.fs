/// torchvision 0.14's quantizable networks through the eager post-training flow against PyTorch 1.13's onednn engine:
/// network_fixtures.py (beside this file) builds each with quantize=False, fuses it with fuse_model(), exports it,
/// and runs PyTorch's prepare with the x86 qconfig, calibration on seeded random batches, convert and the int8 forward,
/// saving every observer's float activations. Here the exported model goes through our Prepare/Calibrate/Convert,
/// calibrated on those activations, so the comparison is exact: PtqFlowTests' rules (scales within `scaleUlps`, zero
/// points equal, every layer's integer output and the final one equal to PyTorch's for at least `exactFraction` of its
/// elements and within `maxSteps` everywhere). mobilenet_v2, shufflenet_v2 and mobilenet_v3_large are also written in
/// QDQ form and run in ONNX Runtime, held as QdqExportTests holds resnet18 (end to end: `deepQdqSteps`).
module Fusion.Dsl.Tests.Quantization.NetworkTests

open System
open System.IO
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Quantization.PtqFlowTests

let private generator = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "network_fixtures.py")

let private fixtures = fixturesFrom generator "fusion-qnets-"

/// The networks and their input sides.
let private networks =
    [ "resnet50", 64; "mobilenet_v2", 64; "shufflenet_v2", 64; "googlenet", 64; "inception_v3", 80; "mobilenet_v3_large", 64 ]

let private matches (name: string) (side: int) =
    test (sprintf "torchvision quantizable %s after fuse_model(), x86, %dx%d, calibrated on PyTorch's float activations: PyTorch's qparams (scales within %d ulp, zero points equal) and its int8 outputs at every layer (>= %g exact, within %d step)" name side side scaleUlps exactFraction maxSteps) {
        needTorch ()
        let c = casesOf fixtures |> List.find (fun c -> c.Name = name + "/x86")
        let problems, u, n, e, w = compareCase PyTorchActivations c
        if not problems.IsEmpty then
            failtestf "%d disagreements with PyTorch:\n%s" problems.Length (String.Join("\n", List.truncate 30 problems))
        printfn "%s: worst scale %d ulps; %d layer-output elements, %.5f exact, worst %d steps" c.Name u n (float e / float (max n 1)) w
    }

/// The most steps ONNX Runtime's end-to-end output of mobilenet_v2, shufflenet_v2 and mobilenet_v3_large (QDQ form)
/// may differ from QuantizedModel's. Each layer, run here on ONNX Runtime's own 8-bit inputs, is held to
/// `QdqExportTests.maxSteps` (1); 50 to 80 layers deep, a one-step difference on a rounding boundary is carried on and
/// can meet another. PyTorch's own sensitivity to one-ulp moves of these networks' Conv/Linear/FloatFunctional scales
/// (ptq_fixtures.nudged, measured once: mobilenet_v2 and mobilenet_v3_large 0 steps, shufflenet_v2 2) does not bound
/// it, since ONNX Runtime's arithmetic differs in more than the scales (QuantizeLinear divides, Hardswish and
/// Hardsigmoid run in its float kernels). Measured on the fixture input: mobilenet_v2 2 steps (73% of integers equal),
/// shufflenet_v2 1 (74%), mobilenet_v3_large 2 (61%); on fresh batches of 1 and 8, all three 2 steps (60% to 73%).
let private deepQdqSteps = 2

[<Tests>]
let tests =
    testList "Quantization" [
        testList "Networks" [
            for name, side in networks do
                yield matches name side
            for name in [ "mobilenet_v2"; "shufflenet_v2"; "mobilenet_v3_large" ] do
                yield test (sprintf "torchvision quantizable %s in QDQ form: full_check, every Conv2d a QLinearConv in ONNX Runtime, every layer on ONNX Runtime's inputs within %d step and the output within %d steps of QuantizedModel's (fractions printed)" name QdqExportTests.maxSteps deepQdqSteps) {
                    needTorch ()
                    Onnx.OnnxSupport.requireChecker ()
                    let c = casesOf fixtures |> List.find (fun c -> c.Name = name + "/x86")
                    QdqExportTests.exportAndCompare c true deepQdqSteps
                }
                yield test (sprintf "torchvision quantizable %s in QDQ form with a dynamic batch: ONNX Runtime runs batches 1 and 8 of a file written for batch 2, within %d steps of QuantizedModel on each" name deepQdqSteps) {
                    needTorch ()
                    let c = casesOf fixtures |> List.find (fun c -> c.Name = name + "/x86")
                    let q, _ = ourFlow PyTorchActivations c
                    let x = npy c (c.Json.GetProperty "input")
                    let dir, cleanup = Onnx.OnnxSupport.tempDir ()
                    use _ = cleanup
                    let path = Path.Combine(dir, "dynamic.onnx")
                    Fusion.Dsl.Onnx.QuantizedOnnx.Write(q, x.Shape.ToArray(), path, Fusion.Dsl.Onnx.OnnxExportOptions(DynamicBatch = true))
                    for batch in [ 1; 8 ] do
                        let n, f, w = QdqExportTests.ortAgainstOurs q path (Fusion.Dsl.FSharp.Tensor.randn (70 + batch) [ yield batch; yield! x.Shape.ToArray().[1..] ])
                        printfn "Quantization.Qdq %s dynamic batch %d: %d output elements, ONNX Runtime %.5f equal to QuantizedModel, worst %d steps" name batch n f w
                        Expect.isLessThanOrEqual w deepQdqSteps (sprintf "%s batch %d: within %d steps on every element" name batch deepQdqSteps)
                }
        ]
    ]
