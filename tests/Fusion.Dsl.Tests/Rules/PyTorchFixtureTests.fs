/// Every PyTorch fixture case through the fusion rules: the fused tree (kinds, names, training flags, arguments, state keys and
/// PyTorch's folded values) must equal PyTorch's, and errors must be refused with the matching kind, the input untouched.
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

/// PyTorch's error texts (see the fixtures' README) and the kinds they correspond to.
let private kindOf (message: string) =
    [ "did not find fuser method", FusionErrorKind.NoRule
      "Fusion only for eval!", FusionErrorKind.TrainingMode
      "must be in the same mode", FusionErrorKind.MixedModes
      "has no attribute", FusionErrorKind.MissingName
      "not yet supported in QAT", FusionErrorKind.NoQatForm ]
    |> List.tryFind (fun (text, _) -> message.Contains text)
    |> Option.map snd

/// `modules_to_fuse` exactly as given to PyTorch: names stay strings, lists become string arrays.
let private rawFuse (spec: FuseSpec) : obj =
    let items = ResizeArray<obj>()
    for e in spec.Entries do
        match e.Name with
        | null -> items.Add(Seq.toArray e.Group :> obj)
        | n -> items.Add(n :> obj)
    items :> obj

let private runCase (json: string) =
    let case = FixtureCase.Load json
    let name = case.Name
    let input = case.Model
    let fuse () = Fuser.FuseModulesRaw(input, rawFuse case.Fuse, case.Qat)
    match case.Outcome with
    | FixtureOutcome.Fused ->
        let fused = fuse ()
        match ModuleComparison.FirstDifference(fused, nonNull case.FusedModel, case.Rtol, case.Atol) with
        | null -> ()
        | diff -> failtestf "%s: fused model differs from PyTorch's: %s" name diff
    // PyTorch 1.13 fails these cases (grouped ConvTranspose + BatchNorm) by a bug; the note says a correct implementation fuses.
    | _ when not (isNull case.Note) ->
        let fused = fuse ()
        let c = ModulePath.Get(input, "0") :?> Conv
        let n = ModulePath.Get(input, "1") :?> BatchNorm
        let folded = ModulePath.Get(fused, "0") :?> Conv
        Expect.equal (TestModels.kindAt "1" fused) "Identity" "the BatchNorm position"
        let w, b = Reference.foldConv c n
        Expect.isLessThanOrEqual (Reference.maxRelError folded.Weight w Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "weight folded per group"
        Expect.isLessThanOrEqual (Reference.maxRelError (TestModels.req folded.Bias) b Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "bias"
    | _ ->
        let message = nonNull case.ErrorMessage
        let expected =
            match kindOf message with
            | Some k -> k
            | None -> failtestf "%s: no kind known for PyTorch's error %s" name message
        let e = Support.throwsOf<FusionException> (fun () -> fuse () |> ignore)
        Expect.equal e.Kind expected (sprintf "%s: kind (message: %s)" name e.Message)
        Expect.isGreaterThanOrEqual e.GroupIndex 0 "names the group"
        Expect.isNonEmpty e.Paths "names the paths"
    Expect.equal input (FixtureCase.Load json).Model (sprintf "%s: the input model is unchanged" name)

[<Tests>]
let tests =
    testList "Rules.PyTorchFixtures" [
        test "the fixture folder has cases of every family" {
            let names = Support.fixtureCases () |> Array.map (fun f -> nonNull (Path.GetFileNameWithoutExtension f))
            for family in [ "qat_"; "error_"; "suite_"; "conv"; "linear_"; "bn" ] do
                Expect.exists names (fun n -> n.StartsWith family) (sprintf "a %s case" family)
        }
        for json in (try Support.fixtureCases () with _ -> [| "<fixture folder missing>" |]) do
            test (sprintf "%s behaves as PyTorch" (Path.GetFileNameWithoutExtension json)) { runCase json }
    ]
