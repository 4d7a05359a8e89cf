/// Every PyTorch fixture case through the fusion rules: the fused tree (kinds, names, training flags, arguments, state keys and
/// PyTorch's folded values) must equal PyTorch's, and errors must be refused with the matching kind, the input untouched.
module Fusion.Dsl.Tests.Rules.PyTorchFixtureTests

open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Conformance
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Folding
open Fusion.Dsl.Tests.Rules.FixtureModels

/// PyTorch's error texts (see the fixtures' README) and the kinds they correspond to.
let private kindOf (message: string) =
    [ "did not find fuser method", FusionErrorKind.NoRule
      "Fusion only for eval!", FusionErrorKind.TrainingMode
      "must be in the same mode", FusionErrorKind.MixedModes
      "has no attribute", FusionErrorKind.MissingName
      "not yet supported in QAT", FusionErrorKind.NoQatForm ]
    |> List.tryFind (fun (text, _) -> message.Contains text)
    |> Option.map snd

/// PyTorch 1.13 fails this case by a bug; the fixture's note says a correct implementation fuses it.
let private pytorchBug = "convtranspose2d_grouped_bn"

let private runCase (name: string) =
    let case = loadCase name
    let input = model case
    let fuse () = Fuser.FuseModulesRaw(input, fuseArgument case, isQat case)
    match outcome case with
    | "fused" ->
        let fused = fuse ()
        let rtol, atol = tolerance case
        match ModuleComparison.FirstDifference(fused, expectedFused case, rtol, atol) with
        | null -> ()
        | diff -> failtestf "%s: fused model differs from PyTorch's: %s" name diff
    | "error" when name = pytorchBug ->
        let fused = fuse ()
        let c = ModulePath.Get(input, "0") :?> Conv
        let n = ModulePath.Get(input, "1") :?> BatchNorm
        let folded = ModulePath.Get(fused, "0") :?> Conv
        Expect.equal (TestModels.kindAt "1" fused) "Identity" "the BatchNorm position"
        let w, b = Reference.foldConv c n
        Expect.isLessThanOrEqual (Reference.maxRelError folded.Weight w Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "weight folded per group"
        Expect.isLessThanOrEqual (Reference.maxRelError (TestModels.req folded.Bias) b Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "bias"
    | "error" ->
        let expected =
            match kindOf (errorMessage case) with
            | Some k -> k
            | None -> failtestf "%s: no kind known for PyTorch's error %s" name (errorMessage case)
        let e = Support.throwsOf<FusionException> (fun () -> fuse () |> ignore)
        Expect.equal e.Kind expected (sprintf "%s: kind (message: %s)" name e.Message)
        Expect.isGreaterThanOrEqual e.GroupIndex 0 "names the group"
        Expect.isNonEmpty e.Paths "names the paths"
    | other -> failtestf "%s: unknown outcome %s" name other
    Expect.equal input (model case) (sprintf "%s: the input model is unchanged" name)

[<Tests>]
let tests =
    testList "Rules.PyTorchFixtures" [
        test "the fixture folder has cases of every family" {
            let names = caseNames ()
            for family in [ "qat_"; "error_"; "suite_"; "conv"; "linear_"; "bn" ] do
                Expect.exists names (fun n -> n.StartsWith family) (sprintf "a %s case" family)
        }
        for name in (try caseNames () with _ -> [| "<fixture folder missing>" |]) do
            test (sprintf "%s behaves as PyTorch" name) { runCase name }
    ]
