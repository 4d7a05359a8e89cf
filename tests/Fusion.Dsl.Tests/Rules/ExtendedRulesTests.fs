/// RuleSet.Extended: PyTorch's defaults unchanged plus patterns PyTorch lacks. Structure of every new fused form (eval and QAT),
/// folded values against the independent float64 formula, BatchNorm-before-layer folds against a float64 forward of the unfused
/// pair, and the guards that refuse what would be wrong (zero padding, QAT, channels, training mode).
module Fusion.Dsl.Tests.Rules.ExtendedRulesTests

open System
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Folding
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Folding
open Fusion.Dsl.Tests.TestModels

let private extended = FuseOptions(Rules = RuleSet.Extended)
let private fuse (model: Module) (group: string list) = Fuser.FuseModules(model, group, extended)
let private fuseQat (model: Module) (group: string list) = Fuser.FuseModulesQat(model, group, extended)
let private hardswish (training: bool) : Module = Activation.Create(ActivationKind.Hardswish, training = training)
let private silu (training: bool) : Module = Activation.Create(ActivationKind.SiLU, training = training)
let private f64 (t: Fusion.Dsl.Tensors.Tensor) = Array.init t.Count (fun i -> float t.[i])

/// A folded layer's parameters match the float64 formula to one float32 rounding.
let private expectFolded (actualW, actualB) (w: float[], b: float[]) =
    Expect.isLessThanOrEqual (Reference.maxRelError actualW w Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "weight"
    Expect.isLessThanOrEqual (Reference.maxRelError actualB b Support.Tol.foldAbsFloor) Support.Tol.foldRoundRel "bias"

let private refusedWith (kind: FusionErrorKind) (f: unit -> Module) =
    let e = Support.throwsOf<FusionException> (fun () -> f () |> ignore)
    Expect.equal e.Kind kind (sprintf "kind (message: %s)" e.Message)
    e

/// Eval BatchNorm over a feature vector in float64.
let private bnVector (bn: BatchNorm) (x: float[]) =
    let s, beta, mean = Reference.bnScale bn, Reference.bnShift bn, f64 (req bn.RunningMean)
    Array.init x.Length (fun i -> (x.[i] - mean.[i]) * s.[i] + beta.[i])

/// y = W x + c in float64.
let private linearForward (w: float[]) (c: float[]) (inF: int) (x: float[]) =
    Array.init c.Length (fun o -> c.[o] + Array.sum (Array.init inF (fun i -> w.[o * inF + i] * x.[i])))

[<Tests>]
let tests =
    testList "Rules.Extended" [
        test "Extended starts with PyTorch's 16 default rules, the same instances in the same order; Default is unchanged" {
            Expect.equal RuleSet.Default.Count 16 "PyTorch's defaults"
            for i in 0 .. RuleSet.Default.Count - 1 do
                Expect.isTrue (obj.ReferenceEquals(RuleSet.Extended.[i], RuleSet.Default.[i])) (sprintf "rule %d shared" i)
            Expect.isGreaterThan RuleSet.Extended.Count RuleSet.Default.Count "adds rules"
        }

        test "with only PyTorch's defaults the new patterns are refused as before (no fuser method)" {
            for model, group in
                [ seq false [ conv 2 3 4 1 1 false; relu6 false ], [ "0"; "1" ]
                  seq false [ bn 1 4 2 false; linear 4 3 1 false ], [ "0"; "1" ]
                  seq false [ linear 4 4 1 false; bn 1 4 2 false; relu false ], [ "0"; "1"; "2" ] ] do
                refusedWith FusionErrorKind.NoRule (fun () -> Fuser.FuseModules(model, group)) |> ignore
        }

        for rank in [ 1; 2; 3 ] do
            test (sprintf "Conv%dd with ReLU6, Hardswish or SiLU wraps into this project's container in both modes" rank) {
                for act, name in [ relu6, sprintf "ConvReLU6_%dd" rank; hardswish, sprintf "ConvHardswish%dd" rank; silu, sprintf "ConvSiLU%dd" rank ] do
                    let c, a = conv rank 3 4 1 1 false, act false
                    for fused in [ fuse (seq false [ c; a ]) [ "0"; "1" ]; fuseQat (seq false [ c; a ]) [ "0"; "1" ] ] do
                        let f = at "0" fused
                        Expect.equal f.TypeName name "kind"
                        Expect.equal f.Namespace Namespaces.FusionDsl "fusion.dsl namespace"
                        Expect.equal (at "0.0" fused) (c :> Module) "conv kept"
                        Expect.equal (at "0.1" fused) a "activation kept"
                        Expect.equal (kindAt "1" fused) "Identity" "second position"
            }

            test (sprintf "Conv%dd+BatchNorm+ReLU6/Hardswish/SiLU: eval folds into the conv, QAT keeps all three" rank) {
                for act, evalName, qatName in
                    [ relu6, sprintf "ConvReLU6_%dd" rank, sprintf "ConvBnReLU6_%dd" rank
                      hardswish, sprintf "ConvHardswish%dd" rank, sprintf "ConvBnHardswish%dd" rank
                      silu, sprintf "ConvSiLU%dd" rank, sprintf "ConvBnSiLU%dd" rank ] do
                    let c, n, a = conv rank 3 4 2 1 false, bn rank 4 2 false, act false
                    let fused = fuse (seq false [ c; n; a ]) [ "0"; "1"; "2" ]
                    Expect.equal (kindAt "0" fused) evalName "eval form"
                    let folded = at "0.0" fused :?> Conv
                    expectFolded (folded.Weight, req folded.Bias) (Reference.foldConv c n)
                    Expect.equal (at "0.1" fused) a "activation"
                    let qat = fuseQat (seq true [ conv rank 3 4 2 1 true; bn rank 4 2 true; act true ]) [ "0"; "1"; "2" ]
                    Expect.equal (kindAt "0" qat) qatName "QAT form"
                    Expect.equal (signature (at "0" qat)) (sprintf "%s+(Conv%dd+,BatchNorm%dd+,%s+)" qatName rank rank (act true).TypeName) "children kept"
            }

            test (sprintf "ConvTranspose%dd+BatchNorm+ReLU folds in eval, has no QAT form; ConvTranspose%dd+ReLU wraps" rank rank) {
                let c, n = convT rank 4 6 2 1 false, bn rank 6 2 false
                let fused = fuse (seq false [ c; n; relu false ]) [ "0"; "1"; "2" ]
                Expect.equal (kindAt "0" fused) (sprintf "ConvTransposeReLU%dd" rank) "eval form"
                let folded = at "0.0" fused :?> Conv
                expectFolded (folded.Weight, req folded.Bias) (Reference.foldConv c n)
                refusedWith FusionErrorKind.NoQatForm (fun () ->
                    fuseQat (seq true [ convT rank 4 6 2 1 true; bn rank 6 2 true; relu true ]) [ "0"; "1"; "2" ]) |> ignore
                let wrapped = fuse (seq false [ c; relu false ]) [ "0"; "1" ]
                Expect.equal (kindAt "0" wrapped) (sprintf "ConvTransposeReLU%dd" rank) "wrap"
            }

        test "Linear+ReLU6 wraps into LinearReLU6; BatchNorm1d+ReLU into BNReLU1d" {
            let fused = fuse (seq false [ linear 4 3 1 false; relu6 false ]) [ "0"; "1" ]
            Expect.equal (kindAt "0" fused) "LinearReLU6" "LinearReLU6"
            Expect.equal (at "0" fused).Namespace Namespaces.FusionDsl "fusion.dsl"
            let bnr = fuse (seq false [ bn 1 4 2 false; relu false ]) [ "0"; "1" ]
            Expect.equal (kindAt "0" bnr) "BNReLU1d" "BNReLU1d"
            Expect.equal (at "0" bnr).Namespace Namespaces.FusionDsl "BNReLU1d is not one of PyTorch's"
        }

        test "Linear+BatchNorm1d+ReLU: eval gives LinearReLU around the folded Linear, QAT keeps LinearBnReLU1d" {
            let l, n = linear 5 4 1 false, bn 1 4 2 false
            let fused = fuse (seq false [ l; n; relu false ]) [ "0"; "1"; "2" ]
            Expect.equal (kindAt "0" fused) "LinearReLU" "PyTorch's LinearReLU"
            let folded = at "0.0" fused :?> Linear
            expectFolded (folded.Weight, req folded.Bias) (Reference.foldLinear l n)
            let qat = fuseQat (seq true [ linear 5 4 1 true; bn 1 4 2 true; relu true ]) [ "0"; "1"; "2" ]
            Expect.equal (kindAt "0" qat) "LinearBnReLU1d" "QAT form"
            refusedWith FusionErrorKind.ChannelMismatch (fun () -> fuse (seq false [ l; bn 1 3 2 false; relu false ]) [ "0"; "1"; "2" ]) |> ignore
        }

        test "BatchNorm1d before a Linear folds into it: the folded Linear equals Linear(BatchNorm(x)) in float64" {
            let rng = Random(11)
            for bias in [ true; false ] do
                for n in [ bn 1 6 2 false; bnNonAffine 1 6 3 false ] do
                    let l = Linear.Create(6, 4, bias = bias, seed = 5)
                    let fused = fuse (seq false [ n; l ]) [ "0"; "1" ]
                    let folded = at "0" fused :?> Linear
                    Expect.equal (kindAt "1" fused) "Identity" "Linear position"
                    let w, c = f64 l.Weight, (match l.Bias with | null -> Array.zeroCreate 4 | b -> f64 b)
                    let fw, fc = f64 folded.Weight, f64 (req folded.Bias)
                    for _ in 1 .. 5 do
                        let x = Array.init 6 (fun _ -> rng.NextDouble() * 4.0 - 2.0)
                        let expected = linearForward w c 6 (bnVector n x)
                        let actual = linearForward fw fc 6 x
                        Expect.isLessThanOrEqual (Reference.relDiff actual expected) Support.Tol.foldForwardRel "forward"
        }

        test "BatchNorm2d before an unpadded Conv2d (grouped, strided, dilated) folds: folded conv(x) = conv(BatchNorm(x)) in float64" {
            let rng = Random(7)
            for groups, stride, dilation, padding in [ 1, 1, 1, ConvPadding.Explicit 0; 2, 2, 1, ConvPadding.Valid; 2, 1, 2, ConvPadding.Explicit 0 ] do
                let c = Conv.Create(2, 4, 6, [| 3 |], stride = [| stride |], dilation = [| dilation |], padding = padding, groups = groups, seed = 3)
                let n = bn 2 4 9 false
                let folded = at "0" (fuse (seq false [ n; c ]) [ "0"; "1" ]) :?> Conv
                let x = Reference.randomImage rng 4 9 9
                let w, b = Reference.convParams c
                let fw, fb = Reference.convParams folded
                // The reference runs with explicit zero padding amounts; 'valid' is zero amounts.
                let expected = Reference.conv2d (Conv.Create(2, 4, 6, [| 3 |], stride = [| stride |], dilation = [| dilation |], groups = groups, seed = 3)) w b (Reference.batchNorm n x)
                let actual = Reference.conv2d (Conv.Create(2, 4, 6, [| 3 |], stride = [| stride |], dilation = [| dilation |], groups = groups, seed = 3)) fw fb x
                Expect.isLessThanOrEqual (Reference.relDiff actual.Data expected.Data) Support.Tol.foldForwardRel
                    (sprintf "groups %d stride %d dilation %d" groups stride dilation)
        }

        test "BatchNorm before a zero-padding Conv is refused: the border outputs would differ" {
            let c = Conv.Create(2, 4, 4, [| 3 |], padding = ConvPadding.Explicit 1, seed = 3)
            let e = refusedWith FusionErrorKind.PaddingNotFoldable (fun () -> fuse (seq false [ bn 2 4 2 false; c ]) [ "0"; "1" ])
            Expect.stringContains e.Message "borders" "says why"
            Expect.stringContains e.Message "no-zero-padding" "names the guard"
            // 'same' with a 1-wide kernel pads nothing; a copying padding mode commutes with the BatchNorm.
            let same1 = Conv.Create(2, 4, 4, [| 1 |], padding = ConvPadding.Same, seed = 3)
            fuse (seq false [ bn 2 4 2 false; same1 ]) [ "0"; "1" ] |> ignore
            let reflect = Conv.Create(2, 4, 4, [| 3 |], padding = ConvPadding.Explicit 1, paddingMode = PaddingMode.Reflect, seed = 3)
            fuse (seq false [ bn 2 4 2 false; reflect ]) [ "0"; "1" ] |> ignore
            Expect.isNull (PrecedingBatchNormFolding.ZeroPaddingProblem reflect) "reflect is exact"
        }

        test "BatchNorm before a layer: no QAT form, channels checked, eval mode required, input unchanged" {
            let c = Conv.Create(2, 4, 4, [| 1 |], seed = 3)
            refusedWith FusionErrorKind.NoQatForm (fun () -> fuseQat (seq false [ bn 2 4 2 false; c ]) [ "0"; "1" ]) |> ignore
            let e = refusedWith FusionErrorKind.ChannelMismatch (fun () -> fuse (seq false [ bn 2 3 2 false; c ]) [ "0"; "1" ])
            Expect.stringContains e.Message "input channels" "names the input side"
            refusedWith FusionErrorKind.TrainingMode (fun () -> fuse (seq true [ bn 1 4 2 true; linear 4 2 1 true ]) [ "0"; "1" ]) |> ignore
            refusedWith FusionErrorKind.NoRunningStats (fun () -> fuse (seq false [ bnNoStats 1 4 false; linear 4 2 1 false ]) [ "0"; "1" ]) |> ignore
            let model = seq false [ bn 2 4 2 false; c ]
            fuse model [ "0"; "1" ] |> ignore
            Expect.equal model (seq false [ bn 2 4 2 false; c ]) "input unchanged"
        }

        test "the folding functions refuse transposed convs, zero padding and training mode with clear errors" {
            let n = bn 2 4 2 false
            let e1 = Support.throwsOf<ArgumentException> (fun () -> PrecedingBatchNormFolding.FoldBnConv(n, convT 2 4 4 1 1 false) |> ignore)
            Expect.stringContains e1.Message "non-transposed" "transposed"
            let e2 = Support.throwsOf<ArgumentException> (fun () ->
                PrecedingBatchNormFolding.FoldBnConv(n, Conv.Create(2, 4, 4, [| 3 |], padding = ConvPadding.Explicit 1)) |> ignore)
            Expect.stringContains e2.Message "zero-pads" "zero padding"
            let e3 = Support.throwsOf<InvalidOperationException> (fun () ->
                PrecedingBatchNormFolding.FoldBnLinear(bn 1 4 2 true, linear 4 2 1 false) |> ignore)
            Expect.stringContains e3.Message "Fusion only for eval!" "training"
        }
    ]
