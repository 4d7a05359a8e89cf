module Fusion.Dsl.Tests.ConformanceRunnerTests

open System.IO
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Conformance
open Fusion.Dsl.IO
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors

/// One test per PyTorch case: the runner must pass it (tree, state, outputs or the right refusal).
let private perCase =
    [ for path in Support.fixtureCases () ->
        test (nonNull (Path.GetFileNameWithoutExtension path)) {
            let r = ConformanceRunner.Run path
            Expect.isTrue r.Passed r.Detail
        } ]

/// A copy of a real case with its fused output shifted, so the runner must notice.
let private tamperedCopy (name: string) =
    let dir = Directory.CreateTempSubdirectory("fusion-conf-").FullName
    let c = FixtureCase.Load(Support.sharedFixture name)
    let fusedOut = nonNull c.FusedOutput
    let shifted = Tensor.FromFloat32(fusedOut.ToArray() |> Array.map (fun v -> v + 1.0f), Seq.toArray fusedOut.Dimensions)
    let entries =
        SafeTensors.Read(nonNull (Path.ChangeExtension(Support.sharedFixture name, ".safetensors")))
        |> Seq.map (fun kv -> if kv.Key = "output.fused" then System.Collections.Generic.KeyValuePair(kv.Key, shifted) else kv)
    File.Copy(Support.sharedFixture name, Path.Combine(dir, name + ".json"))
    SafeTensors.Write(Path.Combine(dir, name + ".safetensors"), entries, null)
    Path.Combine(dir, name + ".json")

[<Tests>]
let tests =
    testList "Conformance" [
        testList "PyTorch fixtures" perCase
        test "a fused output that differs from PyTorch's fails the case and says where" {
            let r = ConformanceRunner.Run(tamperedCopy "conv2d_bn_relu")
            Expect.isFalse r.Passed "a shifted output.fused must fail"
            Expect.stringContains r.Detail "output.fused" "names the output compared"
        }
        test "a case file that does not load fails with the loader's message, never an exception" {
            let dir = Directory.CreateTempSubdirectory("fusion-conf-").FullName
            let path = Path.Combine(dir, "broken.json")
            File.WriteAllText(path, "{ not json")
            let r = ConformanceRunner.Run path
            Expect.isFalse r.Passed "broken file fails"
            Expect.stringContains r.Detail "broken.json" "names the file"
        }
        test "PyTorch's error texts map to the project's kinds" {
            let cases =
                [ "AssertionError", "did not find fuser method for: (<class 'torch.nn.modules.linear.Linear'>,)", FusionErrorKind.NoRule
                  "AssertionError", "Fusion only for eval!", FusionErrorKind.TrainingMode
                  "AssertionError", "Conv and BN both must be in the same mode (train or eval).", FusionErrorKind.MixedModes
                  "AttributeError", "'M' object has no attribute 'bn9'", FusionErrorKind.MissingName
                  "Exception", "Fusing ConvTranspose+BatchNorm not yet supported in QAT.", FusionErrorKind.NoQatForm
                  "AssertionError", "Only support fusing BatchNorm2d with affine set to True", FusionErrorKind.NotAffine
                  "AssertionError", "Only support fusing BatchNorm2d with tracking_running_stats set to True", FusionErrorKind.NoRunningStats
                  "AssertionError", "Output channel of Conv2d must match num_features of BatchNorm2d", FusionErrorKind.ChannelMismatch
                  "TypeError", "unsupported operand type(s) for +: 'NoneType' and 'float'", FusionErrorKind.NoRunningStats ]
            for t, m, k in cases do
                Expect.equal (ConformanceRunner.MapPyTorchError(t, m) |> Option.ofNullable) (Some k) m
            Expect.isNone (ConformanceRunner.MapPyTorchError("ValueError", "something else") |> Option.ofNullable) "unknown text maps to nothing"
        }
        test "malformed fuse lists are expected to be refused whatever PyTorch did" {
            let c = FixtureCase.Load(Support.sharedFixture "conv2d_bn")
            let withFuse spec =
                FixtureCase(c.Name, c.Model, c.Input, c.ReferenceOutput, spec, c.Outcome, fusedModel = c.FusedModel, fusedOutput = c.FusedOutput)
            let mixed = FuseSpec([ FuseEntry.OfName "0"; FuseEntry.OfGroup [ "1" ] ])
            Expect.equal (ConformanceRunner.ExpectationFor(withFuse mixed)) ConformanceRunner.Expectation.RefuseMalformedList "mixed"
            Expect.equal (ConformanceRunner.ExpectationFor(withFuse (FuseSpec []))) ConformanceRunner.Expectation.RefuseMalformedList "empty"
            Expect.equal (ConformanceRunner.ExpectationFor c) ConformanceRunner.Expectation.FuseLikePyTorch "a plain fused case"
        }
    ]
