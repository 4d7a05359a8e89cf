module Fusion.Dsl.Tests.Rules.DefaultRulesTests

open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Folding
open Fusion.Dsl.Tests.TestModels

/// A module of the given kind with 4 output channels, in the given mode.
let private build (training: bool) (seed: int) (kind: string) : Module =
    let rank () = int kind.[kind.Length - 2] - int '0'
    if kind.StartsWith "ConvTranspose" then convT (rank ()) 3 4 2 seed training
    elif kind.StartsWith "Conv" then conv (rank ()) 3 4 3 seed training
    elif kind.StartsWith "BatchNorm" then bn (rank ()) 4 seed training
    elif kind = "Linear" then linear 5 4 seed training
    elif kind = "ReLU" then relu training
    else failtestf "no builder for %s" kind

let private fuseSeq (qat: bool) (training: bool) (kinds: string list) =
    let model = seq training (kinds |> List.mapi (fun i k -> build training (i + 1) k))
    let paths = List.init kinds.Length string
    let fused = if qat then Fuser.FuseModulesQat(model, paths) else Fuser.FuseModules(model, paths)
    model, fused, [ for c in fused.Children -> signature c.Module ]

let private ident training n = List.replicate n (if training then "Identity+" else "Identity-")

/// (pattern, eval result of an eval model, QAT result of a training model or None when QAT refuses).
let private expectations =
    [ for n in 1 .. 3 do
        let c, b = sprintf "Conv%dd" n, sprintf "BatchNorm%dd" n
        yield [ c; b ], [ c + "-" ] @ ident false 1, Some([ sprintf "ConvBn%dd+(%s+,%s+)" n c b ] @ ident true 1)
        yield [ c; b; "ReLU" ], [ sprintf "ConvReLU%dd+(%s-,ReLU-)" n c ] @ ident false 2,
              Some([ sprintf "ConvBnReLU%dd+(%s+,%s+,ReLU+)" n c b ] @ ident true 2)
        yield [ c; "ReLU" ], [ sprintf "ConvReLU%dd+(%s-,ReLU-)" n c ] @ ident false 1, Some([ sprintf "ConvReLU%dd+(%s+,ReLU+)" n c ] @ ident true 1)
      yield [ "Linear"; "BatchNorm1d" ], [ "Linear-" ] @ ident false 1, Some([ "LinearBn1d+(Linear+,BatchNorm1d+)" ] @ ident true 1)
      yield [ "Linear"; "ReLU" ], [ "LinearReLU+(Linear-,ReLU-)" ] @ ident false 1, Some([ "LinearReLU+(Linear+,ReLU+)" ] @ ident true 1)
      for n in 2 .. 3 do
        let b = sprintf "BatchNorm%dd" n
        yield [ b; "ReLU" ], [ sprintf "BNReLU%dd+(%s-,ReLU-)" n b ] @ ident false 1, Some([ sprintf "BNReLU%dd+(%s+,ReLU+)" n b ] @ ident true 1)
      for n in 1 .. 3 do
        let c, b = sprintf "ConvTranspose%dd" n, sprintf "BatchNorm%dd" n
        yield [ c; b ], [ c + "-" ] @ ident false 1, None ]

[<Tests>]
let tests =
    testList "Rules.Defaults" [
        test "the expectations cover every default pattern" {
            Expect.equal (expectations |> List.map (fun (k, _, _) -> k) |> List.sort)
                         ([ for r in RuleSet.Default -> List.ofSeq r.Pattern.Kinds ] |> List.sort) "all 16"
        }
        for kinds, evalSig, qatSig in expectations do
            let name = String.concat "+" kinds
            test (sprintf "fuse_modules on eval %s gives %s" name (String.concat " " evalSig)) {
                let _, _, actual = fuseSeq false false kinds
                Expect.equal actual evalSig "kinds, nesting and training flags as PyTorch's fused_model"
            }
            match qatSig with
            | Some expected ->
                test (sprintf "fuse_modules_qat on training %s gives %s" name (String.concat " " expected)) {
                    let _, _, actual = fuseSeq true true kinds
                    Expect.equal actual expected "kinds, nesting and training flags"
                }
            | None ->
                test (sprintf "fuse_modules_qat refuses %s: it has no QAT form" name) {
                    let model = seq true (kinds |> List.mapi (fun i k -> build true (i + 1) k))
                    let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModulesQat(model, [ "0"; "1" ]) |> ignore)
                    Expect.equal e.Kind FusionErrorKind.NoQatForm "kind"
                    Expect.equal e.GuardName "qat-form" "guard"
                    Expect.stringContains e.Message "FuseModules" "suggests eval fusion"
                }
        test "the form follows is_qat, not the training flag: QAT on an eval model keeps the BatchNorm (ConvBn2d)" {
            let _, _, actual = fuseSeq true false [ "Conv2d"; "BatchNorm2d" ]
            Expect.equal actual [ "ConvBn2d+(Conv2d-,BatchNorm2d-)"; "Identity-" ] "as fixture qat_on_eval_model_conv2d_bn"
        }
        test "patterns without BatchNorm fuse in training mode too, and Identity takes the first module's mode" {
            let _, _, actual = fuseSeq false true [ "Conv2d"; "ReLU" ]
            Expect.equal actual [ "ConvReLU2d+(Conv2d+,ReLU+)"; "Identity+" ] "training flags kept"
        }
        test "QAT groups keep the very modules they were given" {
            let model, fused, _ = fuseSeq true true [ "Conv2d"; "BatchNorm2d"; "ReLU" ]
            for i in 0 .. 2 do
                Expect.isTrue (obj.ReferenceEquals(at (sprintf "0.%d" i) fused, at (string i) model)) (sprintf "child %d shared" i)
        }
        test "eval Conv+BN folds into a Conv with bias whose parameters are the folded ones" {
            let model, fused, _ = fuseSeq false false [ "Conv2d"; "BatchNorm2d"; "ReLU" ]
            let c = at "0.0" fused :?> Conv
            let expectedW, expectedB = Reference.foldConv (at "0" model :?> Conv) (at "1" model :?> BatchNorm)
            Expect.isLessThanOrEqual (Reference.maxRelError c.Weight expectedW Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "weight"
            Expect.isLessThanOrEqual (Reference.maxRelError (req c.Bias) expectedB Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "bias"
            Expect.isTrue (obj.ReferenceEquals(at "0.1" fused, at "2" model)) "the ReLU is the original one"
        }
    ]
