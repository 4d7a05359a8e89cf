/// The `fusion` program with ONNX files: `export --onnx`, `.onnx` wherever a model is taken, `--out fused.onnx`; ONNX
/// Runtime runs what it writes, and bad files exit 1 naming the problem with nothing written.
module Fusion.Dsl.Tests.Onnx.OnnxCliTests

open System.IO
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport

let private run = Fusion.Dsl.Tests.CliTests.run

[<Tests>]
let tests =
    testList "Onnx.Cli" [
        test "export --onnx, then auto on the .onnx file --out fused.onnx: ONNX Runtime gives the same output for both files" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source = Path.Combine(dir, "m.onnx")
            let fused = Path.Combine(dir, "fused.onnx")
            let code, out, err = run [ "export"; "--model"; "mobilenet_v2"; "--input-shape"; "1,3,64,64"; "--dynamic-batch"; "--onnx"; source ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "dynamic batch" "says what it wrote"
            let code2, out2, err2 = run [ "auto"; source; "--out"; fused ]
            Expect.equal code2 0 (out2 + err2)
            Expect.stringContains out2 "fusable group(s)" "lists the groups it fused"
            let x = randomInput 4 [| 2; 3; 64; 64 |]
            let reference = ortRun source x
            let actual = ortRun fused x
            Expect.isLessThanOrEqual (actual.MaxAbsDiff reference) (OrtTol.abs + OrtTol.rel * reference.MaxAbs()) "fused file, unfused file"
        }
        test "auto --rules extended on an .onnx resnet18: its residual joins become graph rewrites, so the .onnx is exported afresh, and ONNX Runtime agrees with the source" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source, fused = Path.Combine(dir, "r.onnx"), Path.Combine(dir, "r-extended.onnx")
            let code, out, err = run [ "export"; "--model"; "resnet18"; "--input-shape"; "1,3,32,32"; "--onnx"; source ]
            Expect.equal code 0 (out + err)
            let code2, out2, err2 = run [ "auto"; source; "--rules"; "extended"; "--out"; fused ]
            Expect.equal code2 0 (out2 + err2)
            Expect.stringContains out2 "then 8 graph rewrite(s)" "resnet18's 8 residual joins"
            Expect.stringContains out2 "exported afresh" "says why the file's graph was not kept"
            let x = randomInput 5 [| 1; 3; 32; 32 |]
            let reference = ortRun source x
            Expect.isLessThanOrEqual ((ortRun fused x).MaxAbsDiff reference) (OrtTol.abs + OrtTol.rel * reference.MaxAbs()) "fused file, unfused file"
        }
        test "fuse on an .onnx file with explicit groups writes .onnx" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source = Path.Combine(dir, "r.onnx")
            let fused = Path.Combine(dir, "r-fused.onnx")
            let code, out, err = run [ "export"; "--model"; "resnet18"; "--input-shape"; "1,3,32,32"; "--onnx"; source ]
            Expect.equal code 0 (out + err)
            let code2, out2, err2 = run [ "fuse"; source; "--groups"; "conv1,bn1,relu;layer1.0.conv1,layer1.0.bn1"; "--out"; fused ]
            Expect.equal code2 0 (out2 + err2)
            Expect.stringContains out2 "max |fused - unfused|" "verifies on a probe input"
            Expect.isTrue (File.Exists fused) "writes the fused file"
        }
        test "a truncated .onnx exits 1 naming the problem; an export the format refuses exits 1 and writes nothing" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source = Path.Combine(dir, "r.onnx")
            let code, out, err = run [ "export"; "--model"; "resnet18"; "--input-shape"; "1,3,32,32"; "--onnx"; source ]
            Expect.equal code 0 (out + err)
            let bytes = File.ReadAllBytes source
            let cut = Path.Combine(dir, "cut.onnx")
            File.WriteAllBytes(cut, bytes[.. 999])
            let code2, _, err2 = run [ "auto"; cut; "--out"; Path.Combine(dir, "never.onnx") ]
            Expect.equal code2 1 "refused"
            Expect.stringContains err2 "cut.onnx" "names the file"
            Expect.stringContains err2 "truncated or corrupt" "says why"
            // A QAT case of the PyTorch fixtures: a training-mode BatchNorm normalises with batch statistics.
            let qat = Support.sharedFixture "qat_conv2d_bn_relu"
            let code3, _, err3 = run [ "export"; qat; "--onnx"; Path.Combine(dir, "tiny.onnx") ]
            Expect.equal code3 1 "refused"
            Expect.stringContains err3 "cannot export module" "names the module"
            Expect.stringContains err3 "training mode" "says why"
            Expect.isFalse (File.Exists(Path.Combine(dir, "never.onnx")) || File.Exists(Path.Combine(dir, "tiny.onnx"))) "nothing written"
        }
    ]
