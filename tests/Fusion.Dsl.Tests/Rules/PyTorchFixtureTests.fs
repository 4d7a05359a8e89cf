/// PyTorch fixture cases seen from the rules: the folder covers every family, and the cases PyTorch gets wrong fold
/// exactly per group. The full case-by-case comparison with PyTorch is the conformance runner's (Conformance tests).
module Fusion.Dsl.Tests.Rules.PyTorchFixtureTests

open System.IO
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Conformance
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.IO
open Fusion.Dsl.Tests.Folding

/// Cases where PyTorch 1.13 fails by a bug (grouped ConvTranspose + BatchNorm): the note says a correct implementation
/// fuses. Beyond the conformance runner's output check, the folded weight and bias must equal the float64 formula
/// applied per group. (Every case, of every family, also runs through the conformance runner: Conformance tests.)
let private runNoteCase (json: string) =
    let case = FixtureCase.Load json
    let input = case.Model
    let fused = if case.Qat then Fuser.FuseModulesQat(input, case.Fuse) else Fuser.FuseModules(input, case.Fuse)
    let c = ModulePath.Get(input, "0") :?> Conv
    let n = ModulePath.Get(input, "1") :?> BatchNorm
    let folded = ModulePath.Get(fused, "0") :?> Conv
    Expect.equal (TestModels.kindAt "1" fused) "Identity" "the BatchNorm position"
    let w, b = Reference.foldConv c n
    Expect.isLessThanOrEqual (Reference.maxRelError folded.Weight w Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "weight folded per group"
    Expect.isLessThanOrEqual (Reference.maxRelError (TestModels.req folded.Bias) b Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "bias"
    Expect.equal input (FixtureCase.Load json).Model "the input model is unchanged"

[<Tests>]
let tests =
    testList "Rules.PyTorchFixtures" [
        // The shared set, whatever FUSION_FIXTURES points at: another set (the extra fixtures) need not have every family.
        test "the shared fixture folder has cases of every family" {
            let names = Directory.GetFiles(Support.sharedFixturesDir, "*.json") |> Array.map (fun f -> nonNull (Path.GetFileNameWithoutExtension f))
            for family in [ "qat_"; "error_"; "suite_"; "conv"; "linear_"; "bn" ] do
                Expect.exists names (fun n -> n.StartsWith family) (sprintf "a %s case" family)
        }
        for json in Support.fixtureCases () do
            if File.ReadAllText(json).Contains "\"note\"" then
                test (sprintf "%s folds per group where PyTorch fails" (Path.GetFileNameWithoutExtension json)) { runNoteCase json }
    ]
