/// The engine against real PyTorch: every fixture case's unfused model reproduces `output.unfused`, and every fused
/// case's fused model (PyTorch's own fuse result) reproduces `output.fused`, within the case's rtol/atol.
module Fusion.Dsl.Tests.Engine.ForwardFixtureTests

open System.IO
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

[<Tests>]
let tests =
    testList "Engine.Fixtures" [
        for json in Support.fixtureCases () do
            let name = Path.GetFileNameWithoutExtension json
            test $"{name}: the unfused model reproduces PyTorch's output" {
                let c = FixtureCase.Load json
                expectClose "unfused" c.Rtol c.Atol (Forward.Run(c.Model, c.Input)) c.ReferenceOutput
            }
            if (FixtureCase.Load json).Outcome = FixtureOutcome.Fused then
                test $"{name}: PyTorch's fused model reproduces PyTorch's fused output" {
                    let c = FixtureCase.Load json
                    match c.FusedModel, c.FusedOutput with
                    | null, _ | _, null -> failtest "a fused case without its fused model or output"
                    | fused, expected -> expectClose "fused" c.Rtol c.Atol (Forward.Run(fused, c.Input)) expected
                }
    ]
