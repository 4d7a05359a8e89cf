/// The engine against real PyTorch: every fixture case's unfused model reproduces `output.unfused` (or, where PyTorch's
/// unfused forward itself failed, fails too), and every fused case's fused model (PyTorch's own fuse result) reproduces
/// `output.fused`, within the case's rtol/atol.
module Fusion.Dsl.Tests.Engine.ForwardFixtureTests

open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Conformance

/// The case's `expect.outcome`, read from the JSON alone so that listing the tests does not load every tensor file.
let private outcomeOf (json: string) =
    use d = JsonDocument.Parse(File.ReadAllText json)
    d.RootElement.GetProperty("expect").GetProperty("outcome").GetString()

[<Tests>]
let tests =
    testList "Engine.Fixtures" [
        for json in Support.fixtureCases () do
            let name = Path.GetFileNameWithoutExtension json
            test $"{name}: the unfused model reproduces PyTorch's output, or fails where PyTorch's failed" {
                let c = FixtureCase.Load json
                match c.ReferenceOutput with
                | null ->
                    let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(c.Model, c.Input) |> ignore)
                    Expect.isNotEmpty e.ModulePath $"names the module that cannot run (PyTorch: {c.ReferenceError})"
                | expected -> expectClose "unfused" c.Rtol c.Atol (Forward.Run(c.Model, c.Input)) expected
            }
            if outcomeOf json = "fused" then
                test $"{name}: PyTorch's fused model reproduces PyTorch's fused output" {
                    let c = FixtureCase.Load json
                    match c.FusedModel, c.FusedOutput with
                    | null, _ | _, null -> failtest "a fused case without its fused model or output"
                    | fused, expected -> expectClose "fused" c.Rtol c.Atol (Forward.Run(fused, c.Input)) expected
                }
    ]
