/// Laws of the GEMM's weight packing: the documented panel layout, and for folded weights, a BatchNorm fold whose
/// elements are not computed yet is packed straight from the original weight and the channel scale, with exactly the
/// bits of the computed fold, and the forward pass never computes it.
module Fusion.Dsl.Tests.Engine.GemmTests

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Folding
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.TestModels

/// The BatchNorm fold of a convolution of either direction.
let foldConv (conv: Conv) (seed: int) =
    let n = bn conv.Rank conv.OutChannels seed false
    if conv.Transposed then BatchNormFolding.FoldConvTransposeBn(conv, n) else BatchNormFolding.FoldConvBn(conv, n)

/// The same layer with its weight as a plain tensor holding the computed fold's elements.
let computed (conv: Conv) =
    conv.WithParameters(Tensor.FromFloat32(conv.Weight.Float32, conv.Weight.Dimensions |> Seq.toArray), conv.Bias)

[<Tests>]
let tests =
    testList "Engine.Gemm" [
        test "200 random folded convolutions (grouped, transposed, strided) give the bits of their computed folds" {
            let rng = Random 20261127
            for i in 1 .. 200 do
                let conv, x = ConvKernelsTests.randomConv rng
                let seed = rng.Next()
                // Two folds of the same layer: one stays pending through the forward, the other is read.
                let pending, read = foldConv conv seed, foldConv conv seed
                expectSameBits $"case {i}: {conv}" (Forward.Run(pending, x, twoThreads)) (Forward.Run(computed read, x, twoThreads))
        }
        for name, conv, shape in
            [ "3x3 convolution", Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1), [| 2; 16; 9; 11 |]
              "grouped 3x3 convolution", Conv.Create(2, 12, 18, [| 3 |], groups = 3, seed = 2), [| 1; 12; 8; 8 |]
              "grouped transposed convolution", Conv.Create(2, 16, 12, [| 4 |], [| 2 |], ConvPadding.Explicit 1, groups = 2, transposed = true, seed = 3), [| 1; 16; 5; 6 |] ] do
            test $"a forward through a folded {name} packs it without computing its elements" {
                let folded = foldConv conv 7
                let y = Forward.Run(folded, randomTensor (Random 5) shape, twoThreads)
                Expect.isFalse folded.Weight.IsMaterialized "the fold is still pending: no folded copy was written"
                let expected = Forward.Run(computed (foldConv conv 7), randomTensor (Random 5) shape, twoThreads)
                expectSameBits name y expected
            }
        test "a forward through a folded Linear on a batch packs it without computing its elements" {
            let l = linear 7 5 3 false
            let folded = BatchNormFolding.FoldLinearBn(l, bn 1 5 4 false)
            let x = randomTensor (Random 6) [| 8; 7 |]
            let y = Forward.Run(folded, x, twoThreads)
            Expect.isFalse folded.Weight.IsMaterialized "still pending"
            let read = BatchNormFolding.FoldLinearBn(l, bn 1 5 4 false)
            let plain = read.WithParameters(Tensor.FromFloat32(read.Weight.Float32, 5, 7), read.Bias)
            expectSameBits "Linear" y (Forward.Run(plain, x, twoThreads))
        }
        test "packing a pending fold with a per-row scale equals packing its computed elements" {
            let conv = Conv.Create(2, 6, 14, [| 3 |], groups = 2, seed = 9)
            let folded = foldConv conv 11
            let cinG, coutG = 3, 7
            let k = cinG * 9
            let fromRecipe = Gemm.PackWeight(folded.Weight, 2, coutG, k, int64 (coutG * k), int64 k, 1L, 2)
            let fromValues = Gemm.PackA(folded.Weight.ToArray(), 2, coutG, k, int64 (coutG * k), int64 k, 1L)
            Expect.sequenceEqual (Array.map BitConverter.SingleToInt32Bits fromRecipe) (Array.map BitConverter.SingleToInt32Bits fromValues) "same bits"
        }
        test "PackA writes element (r, k) of group g at [g][r / 6][k][r % 6], padding rows zero, each folded value the float64 product rounded once" {
            // Row and depth counts on both sides of the six-row panels and the eight-step vector blocks, rows stored
            // contiguously (a convolution's weight) and transposed (a transposed convolution's).
            let rng = Random 17
            for groups in [ 1; 2 ] do
                for m in [ 1; 5; 6; 7; 12; 13 ] do
                    for k in [ 1; 7; 8; 9; 16; 17; 40 ] do
                        for transposed in [ false; true ] do
                            for folded in [ false; true ] do
                                let src = Array.init (groups * m * k) (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))
                                let factors = Array.init (groups * m) (fun _ -> rng.NextDouble() * 3.0 - 1.5)
                                let rowStride, colStride = if transposed then 1L, int64 m else int64 k, 1L
                                let packed = Gemm.PackA(src, groups, m, k, int64 (m * k), rowStride, colStride, (if folded then factors else null), 2)
                                let panels = (m + Gemm.MR - 1) / Gemm.MR
                                let expected =
                                    Array.init (groups * panels * k * Gemm.MR) (fun i ->
                                        let r, kk, gp = i % Gemm.MR, i / Gemm.MR % k, i / (Gemm.MR * k)
                                        let g, row = gp / panels, gp % panels * Gemm.MR + r
                                        if row >= m then 0f
                                        else
                                            let x = src.[g * m * k + int (int64 row * rowStride + int64 kk * colStride)]
                                            if folded then float32 (float x * factors.[g * m + row]) else x)
                                Expect.sequenceEqual (Array.map BitConverter.SingleToInt32Bits packed) (Array.map BitConverter.SingleToInt32Bits expected)
                                    $"groups {groups}, {m}x{k}, transposed {transposed}, folded {folded}"
        }
    ]
