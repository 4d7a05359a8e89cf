/// The engine against real PyTorch: every fixture case's unfused model reproduces `output.unfused`, and every fused
/// case's fused model (PyTorch's own fuse result) reproduces `output.fused`, within the case's rtol/atol.
module Fusion.Dsl.Tests.Engine.ForwardFixtureTests

open System.IO
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Tests

let private close (what: string) (actual: Fusion.Dsl.Tensors.Tensor) (expected: Fusion.Dsl.Tensors.Tensor) rtol atol =
    Expect.sequenceEqual (actual.Dimensions) (expected.Dimensions) $"{what}: shape"
    let diff = actual.MaxAbsDiff expected
    let bound = atol + rtol * expected.MaxAbs()
    Expect.isTrue (diff <= bound) $"{what}: max|a-b| = {diff} exceeds atol + rtol*max|b| = {bound}"

[<Tests>]
let tests =
    testList "Engine.Fixtures" [
        for json in Support.fixtureCases () do
            let name = Path.GetFileNameWithoutExtension json
            test $"{name}: the unfused model reproduces PyTorch's output" {
                let c = FixtureLite.load json
                close "unfused" (Forward.Run(c.Model, c.Input)) c.ReferenceOutput c.Rtol c.Atol
            }
            if (FixtureLite.load json).Outcome = "fused" then
                test $"{name}: PyTorch's fused model reproduces PyTorch's fused output" {
                    let c = FixtureLite.load json
                    close "fused" (Forward.Run(c.FusedModel.Value, c.Input)) c.FusedOutput.Value c.Rtol c.Atol
                }
    ]
