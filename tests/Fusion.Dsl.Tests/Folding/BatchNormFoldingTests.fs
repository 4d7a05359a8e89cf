module Fusion.Dsl.Tests.Folding.BatchNormFoldingTests

open System
open Expecto
open Fusion.Dsl.Folding
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels

/// Folded parameters must equal the float64 formula up to their single float32 rounding.
let private expectFolded (what: string) (actual: Tensor) (expected: float[]) =
    let err = Reference.maxRelError actual expected Support.Tol.foldAbsFloor
    Expect.isLessThanOrEqual err Support.Tol.foldRoundRel (sprintf "%s equals the float64 formula up to one float32 rounding (error %g)" what err)

let private expectConvFold (conv: Conv) (bnm: BatchNorm) (folded: Conv) =
    let w, b = Reference.foldConv conv bnm
    expectFolded "weight" folded.Weight w
    match folded.Bias with
    | null -> failtest "the folded convolution has a bias"
    | bias -> expectFolded "bias" bias b
    Expect.sequenceEqual folded.Weight.Dimensions conv.Weight.Dimensions "weight shape kept"

/// The folded layer keeps every hyperparameter of the original except that it now has a bias.
let private expectSameHyperparameters (original: Fusion.Dsl.Algebra.Module) (folded: Fusion.Dsl.Algebra.Module) =
    let args (m: Fusion.Dsl.Algebra.Module) = [ for kv in m.Arguments do if kv.Key <> "bias" then yield kv.Key, sprintf "%A" kv.Value ]
    Expect.equal (args folded) (args original) "hyperparameters kept"
    Expect.equal folded.TypeName original.TypeName "same kind"
    Expect.equal folded.Training original.Training "same mode"

[<Tests>]
let tests =
    testList "Folding.BatchNorm" [
        for rank in [ 1; 2; 3 ] do
            test (sprintf "Conv%dd+BatchNorm%dd folds to W·s and (b-mean)·s+beta per output channel" rank rank) {
                let c = conv rank 3 5 3 rank false
                let n = bn rank 5 (10 + rank) false
                let folded = BatchNormFolding.FoldConvBn(c, n)
                expectConvFold c n folded
                expectSameHyperparameters c folded
            }
            test (sprintf "ConvTranspose%dd+BatchNorm%dd folds along weight dimension 1" rank rank) {
                let c = convT rank 3 4 2 rank false
                let n = bn rank 4 (20 + rank) false
                expectConvFold c n (BatchNormFolding.FoldConvTransposeBn(c, n))
            }
        test "a fold writes no weight: the folded weight is pending on the original itself until it is read" {
            let c = conv 2 3 5 3 1 false
            let l = linear 4 5 2 false
            for folded, original in
                [ BatchNormFolding.FoldConvBn(c, bn 2 5 3 false).Weight, c.Weight
                  (let t = convT 2 5 3 3 4 false in BatchNormFolding.FoldConvTransposeBn(t, bn 2 3 5 false).Weight, t.Weight)
                  BatchNormFolding.FoldLinearBn(l, bn 1 5 6 false).Weight, l.Weight ] do
                Expect.isFalse folded.IsMaterialized "not computed by the fold"
                match folded.Pending with
                | :? PendingFold as p -> Expect.isTrue (obj.ReferenceEquals(p.Source, original.RawFloat32)) "the recipe reads the original weight, not a copy"
                | _ -> failtest "a pending recipe"
        }
        test "a convolution without bias gains the folded bias -mean·s+beta" {
            let c = convNoBias 2 3 4 3 1 false
            let n = bn 2 4 2 false
            let folded = BatchNormFolding.FoldConvBn(c, n)
            Expect.isTrue folded.HasBias "bias=True after folding, as PyTorch"
            expectConvFold c n folded
        }
        test "folds of one width in a row each start afresh (the fold's temporaries are reused per width)" {
            let withBias, plain = conv 2 3 4 3 1 false, convNoBias 2 3 4 3 7 false
            let n1, n2 = bn 2 4 2 false, bn 2 4 5 false
            let first = BatchNormFolding.FoldConvBn(withBias, n1)
            let second = BatchNormFolding.FoldConvBn(plain, n2)
            expectConvFold withBias n1 first
            expectConvFold plain n2 second
            let struct (scale, shift) = BatchNormFolding.Affine(n2, ReadOnlySpan<float32>.Empty, 4)
            Expect.sequenceEqual scale (Reference.bnScale n2) "the affine map's scale is the fold's"
            Expect.sequenceEqual (shift |> Array.map float32) ((req second.Bias).ToArray()) "and its shift the folded bias without a bias before"
        }
        test "a non-affine BatchNorm folds as gamma 1 and beta 0" {
            let c = conv 2 3 4 3 1 false
            let n = bnNonAffine 2 4 3 false
            let folded = BatchNormFolding.FoldConvBn(c, n)
            let var = (req n.RunningVar).ToArray()
            let mean = (req n.RunningMean).ToArray()
            let w = c.Weight.ToArray()
            let b = (req c.Bias).ToArray()
            let block = w.Length / 4
            let expectedW = Array.init w.Length (fun i -> float w.[i] / sqrt (float var.[i / block] + n.Eps))
            let expectedB = Array.init 4 (fun o -> (float b.[o] - float mean.[o]) / sqrt (float var.[o] + n.Eps))
            expectFolded "weight" folded.Weight expectedW
            expectFolded "bias" (req folded.Bias) expectedB
        }
        test "a grouped, dilated, strided ConvTranspose2d folds per group (PyTorch 1.13 fails here)" {
            let c = Conv.Create(2, 4, 6, [| 3 |], stride = [| 2 |], padding = ConvPadding.Explicit(1), dilation = [| 2 |],
                                groups = 2, transposed = true, outputPadding = [| 1 |], seed = 5)
            let n = bn 2 6 6 false
            let folded = BatchNormFolding.FoldConvTransposeBn(c, n)
            expectConvFold c n folded
            // The law: the folded layer computes BatchNorm(ConvTranspose(x)), checked with naive float64 forwards.
            let x = Reference.randomImage (Random 7) 4 5 4
            let w, b = Reference.convParams c
            let expected = Reference.convTranspose2d c w b x |> Reference.batchNorm n
            let fw, fb = Reference.convParams folded
            let actual = Reference.convTranspose2d folded fw fb x
            Expect.isLessThanOrEqual (Reference.relDiff actual.Data expected.Data) Support.Tol.foldForwardRel "folded forward = conv then BN"
        }
        test "a grouped, dilated, padded Conv2d folds so that folded(x) = BatchNorm(conv(x))" {
            let c = Conv.Create(2, 4, 6, [| 3 |], stride = [| 2 |], padding = ConvPadding.Explicit(2), dilation = [| 2 |], groups = 2, seed = 8)
            let n = bn 2 6 9 false
            let folded = BatchNormFolding.FoldConvBn(c, n)
            let x = Reference.randomImage (Random 10) 4 9 7
            let w, b = Reference.convParams c
            let expected = Reference.conv2d c w b x |> Reference.batchNorm n
            let fw, fb = Reference.convParams folded
            Expect.isLessThanOrEqual (Reference.relDiff (Reference.conv2d folded fw fb x).Data expected.Data) Support.Tol.foldForwardRel
                "folded forward = conv then BN"
        }
        test "Linear+BatchNorm1d folds per output feature, with and without bias" {
            for withBias in [ true; false ] do
                let l = Linear.Create(6, 4, bias = withBias, seed = 3)
                let n = bn 1 4 4 false
                let folded = BatchNormFolding.FoldLinearBn(l, n)
                let w, b = Reference.foldLinear l n
                expectFolded "weight" folded.Weight w
                expectFolded "bias" (req folded.Bias) b
                Expect.isTrue folded.HasBias "bias after folding"
                expectSameHyperparameters l folded
        }
        test "a one-feature BatchNorm1d broadcasts over every Linear output, as PyTorch's fuse_linear_bn_eval allows" {
            let l = linear 6 4 3 false
            let n = bn 1 1 5 false
            let folded = BatchNormFolding.FoldLinearBn(l, n)
            let w, b = Reference.foldLinear l n
            expectFolded "weight" folded.Weight w
            expectFolded "bias" (req folded.Bias) b
        }
        test "the per-channel scale is gamma / sqrt(var + eps) in float64" {
            let n = bn 2 5 11 false
            let s = BatchNormFolding.Scale n
            Expect.sequenceEqual (s.ToArray()) (Reference.bnScale n) "same doubles"
        }
        test "folding leaves both inputs unchanged and shares nothing writable" {
            let c = conv 2 3 4 3 1 false
            let n = bn 2 4 2 false
            let before = c.Weight.ToArray(), (req c.Bias).ToArray()
            let folded = BatchNormFolding.FoldConvBn(c, n)
            Expect.equal (c.Weight.ToArray(), (req c.Bias).ToArray()) before "conv parameters unchanged"
            Expect.equal (n :> Fusion.Dsl.Algebra.Module) (bn 2 4 2 false) "BatchNorm unchanged"
            Expect.isFalse (obj.ReferenceEquals(folded.Weight, c.Weight)) "a new weight tensor"
        }
        test "folding refuses training mode with PyTorch's 'Fusion only for eval!'" {
            let e = Support.throwsOf<InvalidOperationException> (fun () -> BatchNormFolding.FoldConvBn(conv 2 3 4 3 1 true, bn 2 4 2 true) |> ignore)
            Expect.stringContains e.Message "Fusion only for eval!" "PyTorch's words"
            Expect.stringContains e.Message "training mode" "names the mode"
        }
        test "folding refuses a BatchNorm without running statistics, a channel mismatch and the wrong conv kind" {
            let e1 = Support.throwsOf<ArgumentException> (fun () -> BatchNormFolding.FoldConvBn(conv 2 3 4 3 1 false, bnNoStats 2 4 false) |> ignore)
            Expect.stringContains e1.Message "track_running_stats=False" "no statistics"
            let e2 = Support.throwsOf<ArgumentException> (fun () -> BatchNormFolding.FoldConvBn(conv 2 3 4 3 1 false, bn 2 5 2 false) |> ignore)
            Expect.stringContains e2.Message "num_features=5" "names the BN channels"
            Expect.stringContains e2.Message "4 output channels" "names the conv channels"
            let e3 = Support.throwsOf<ArgumentException> (fun () -> BatchNormFolding.FoldConvBn(convT 2 3 4 3 1 false, bn 2 4 2 false) |> ignore)
            Expect.stringContains e3.Message "FoldConvTransposeBn" "points to the right function"
            let e4 = Support.throwsOf<ArgumentException> (fun () -> BatchNormFolding.FoldConvTransposeBn(conv 2 3 4 3 1 false, bn 2 4 2 false) |> ignore)
            Expect.stringContains e4.Message "FoldConvBn" "points to the right function"
            let e5 = Support.throwsOf<ArgumentException> (fun () -> BatchNormFolding.FoldLinearBn(linear 6 4 1 false, bn 1 3 2 false) |> ignore)
            Expect.stringContains e5.Message "single feature" "says what would fold"
        }
        testProperty "for random shapes and statistics, folded conv parameters equal the float64 formula" <| fun (seed: int) ->
            let r = Random(seed)
            let rank = r.Next(1, 4)
            let groups = r.Next(1, 3)
            let inC, outC = groups * r.Next(1, 3), groups * r.Next(1, 4)
            let transposed = r.Next(2) = 0
            let c = Conv.Create(rank, inC, outC, [| r.Next(1, 4) |], groups = groups, bias = (r.Next(2) = 0), transposed = transposed, seed = seed)
            let n = bn rank outC (seed + 1) false
            let folded = if transposed then BatchNormFolding.FoldConvTransposeBn(c, n) else BatchNormFolding.FoldConvBn(c, n)
            expectConvFold c n folded
    ]
