/// Laws of the F(2×2, 3×3) Winograd path for 3×3 unit-stride convolutions: it equals the float64 reference from the
/// definition within the kernel tolerance over odd and even sizes, every padding amount and mode, batches and fused
/// epilogues; the thread count changes no bit; it is taken exactly where it applies; and a pending BatchNorm fold is
/// transformed with the bits of the computed fold.
module Fusion.Dsl.Tests.Engine.WinogradTests

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Reference
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

/// A random convolution the Winograd path computes (3×3, unit stride and dilation, one group, at least 16 channels
/// each way), and an input for it: sizes from 1 to 20 (odd sizes leave half tiles), any padding amount and mode.
let private randomCase (rng: Random) : Conv * Tensor =
    let cin, cout = rng.Next(16, 41), rng.Next(16, 41)
    let pad = rng.Next(0, 3)
    let mode = [| PaddingMode.Zeros; PaddingMode.Zeros; PaddingMode.Reflect; PaddingMode.Replicate; PaddingMode.Circular |].[rng.Next 5]
    let least = max (3 - 2 * pad) (if mode = PaddingMode.Zeros then 1 else pad + 1)
    let h, w = rng.Next(max 1 least, 21), rng.Next(max 1 least, 21)
    let conv = Conv.Create(2, cin, cout, [| 3 |], padding = ConvPadding.Explicit pad, bias = (rng.Next 3 > 0), paddingMode = mode, seed = rng.Next())
    conv, randomTensor rng [| rng.Next(1, 3); cin; h; w |]

let private applies (conv: Conv) (shape: int[]) = Winograd.Applies(ConvGeometry.Create(conv, ReadOnlySpan shape))

/// The Winograd path's own result (failing the test when it declines the input).
let private winograd (conv: Conv) (x: Tensor) (chunkFloats: int64) =
    let geo = ConvGeometry.Create(conv, ReadOnlySpan(x.Dimensions |> Seq.toArray))
    match Winograd.TryForward(conv, geo, x, Epilogue.None, kernelPass (), chunkFloats) with
    | null -> failtest "the Winograd path declined the input"
    | y -> y

/// Infinities and NaNs where the float64 reference has them, the rest within the kernel tolerance.
let private expectNonFiniteLike (what: string) (actual: Tensor) (expected: Tensor) =
    let a, e = actual.ToArray(), expected.ToArray()
    Expect.isGreaterThan (e |> Array.filter Single.IsInfinity |> Array.length) 0 $"{what}: the case produces infinities"
    let bound = Support.Tol.kernelAbs + Support.Tol.kernelRel * (e |> Array.filter Single.IsFinite |> Array.map (fun v -> abs (float v)) |> Array.max)
    for i in 0 .. e.Length - 1 do
        if not (Single.IsFinite e.[i]) then Expect.equal (a.[i].ToString()) (e.[i].ToString()) $"{what}: element {i}"
        else Expect.isLessThanOrEqual (abs (float a.[i] - float e.[i])) bound $"{what}: element {i}"

[<Tests>]
let tests =
    testList "Engine.Winograd" [
        test "120 random 3x3 convolutions equal the float64 reference, one thread and two giving the same bits" {
            let rng = Random 20261127
            for i in 1 .. 120 do
                let conv, x = randomCase rng
                Expect.isTrue (applies conv (x.Dimensions |> Seq.toArray)) "the case takes the Winograd path"
                ConvKernelsTests.expectConvLaw $"case {i}: {conv} on {Tensor.ShapeString x.Shape}" conv x
        }
        for cin, cout, size in [ 64, 64, 56; 256, 256, 14; 512, 512, 7 ] do
            test $"resnet's {cin}->{cout} 3x3 at {size}x{size} equals the float64 reference" {
                let conv = Conv.Create(2, cin, cout, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = cin)
                let x = randomTensor (Random size) [| 1; cin; size; size |]
                expectClose $"{cin}->{cout}" Support.Tol.kernelRel Support.Tol.kernelAbs (Forward.Run(conv, x, twoThreads)) (NaiveReference.Conv(conv, x))
            }
        for h, w in [ 9, 37; 6, 32; 5, 33 ] do
            test $"rows of sixteen tiles and more (the AVX-512 transforms), biased, at {h}x{w} equal the float64 reference" {
                // Widths 37 and 33 end in a half tile and an overlapping last block; 32 is exactly one block.
                let conv = Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, bias = true, seed = w)
                let x = randomTensor (Random w) [| 2; 16; h; w |]
                Expect.isTrue (applies conv (x.Dimensions |> Seq.toArray)) "the case takes the Winograd path"
                ConvKernelsTests.expectConvLaw $"{h}x{w}" conv x
            }
        test "passes over a few tile rows at a time give the bits of one pass" {
            let rng = Random 11
            for h, w in [ 9, 13; 16, 5; 3, 21 ] do
                let conv = Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = h)
                let x = randomTensor rng [| 2; 16; h; w |]
                let tw = int64 ((w + 1) / 2)
                // 16 transformed values per tile and channel (16 in, 24 out): one tile row per pass, then two.
                let perRow = 16L * 40L * tw
                let onePass = winograd conv x Winograd.ChunkFloats
                for rows in [ 1L; 2L ] do
                    expectSameBits $"{h}x{w}, {rows} tile row(s) per pass" (winograd conv x (rows * perRow)) onePass
                expectSameBits $"{h}x{w}: one pass is the engine's result" onePass (Forward.Run(conv, x, twoThreads))
        }
        test "images sharing a pass give the bits each image gets alone, through a bias and ReLU epilogue" {
            let conv = Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, bias = true, seed = 21)
            let fused = FusedModule.Create("ConvReLU2d", conv, Activation.Create(ActivationKind.ReLU))
            let x = randomTensor (Random 22) [| 5; 16; 7; 9 |]
            let data, plane = x.ToArray(), 16 * 7 * 9
            let image n = Tensor.FromFloat32(ReadOnlySpan(data, n * plane, plane), 1, 16, 7, 9)
            let alone = Tensor.FromFloat32(ReadOnlySpan([ for n in 0 .. 4 -> Forward.Run(fused, image n, twoThreads).ToArray() ] |> Array.concat), 5, 24, 7, 9)
            let geo = ConvGeometry.Create(conv, ReadOnlySpan [| 5; 16; 7; 9 |])
            // One image's transformed tiles (16 values per tile and channel, 16 in and 24 out, 4x5 tiles): passes of
            // 1, 2 (the last one shorter) and all 5 images.
            let perImage = 16L * 40L * 4L * 5L
            for images in [ 1L; 2L; 5L ] do
                let ep = Epilogue(null, conv.Bias.ToArray(), Epilogue.ActOf ActivationKind.ReLU)
                match Winograd.TryForward(conv, geo, x, ep, kernelPass (), images * perImage) with
                | null -> failtest "the Winograd path declined the input"
                | y -> expectSameBits $"{images} image(s) per pass" y alone
        }
        test "an infinite input gives infinities where the direct product does, not the NaN of Inf - Inf" {
            let conv = Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = 8)
            let data = (randomTensor (Random 9) [| 1; 16; 6; 6 |]).ToArray()
            data.[2 * 6 + 2] <- infinityf
            let x = Tensor.FromFloat32(ReadOnlySpan data, 1, 16, 6, 6)
            let geo = ConvGeometry.Create(conv, ReadOnlySpan [| 1; 16; 6; 6 |])
            Expect.isNull (Winograd.TryForward(conv, geo, x, Epilogue.None, kernelPass ())) "declined"
            expectNonFiniteLike "Inf input" (Forward.Run(conv, x, twoThreads)) (NaiveReference.Conv(conv, x))
        }
        test "an infinite weight gives infinities where the direct product does" {
            let plain = Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = 10)
            let w = plain.Weight.ToArray()
            w.[4] <- -infinityf
            let conv = plain.WithParameters(Tensor.FromFloat32(ReadOnlySpan w, 16, 16, 3, 3), null)
            let x = randomTensor (Random 11) [| 1; 16; 5; 5 |]
            expectNonFiniteLike "Inf weight" (Forward.Run(conv, x, twoThreads)) (NaiveReference.Conv(conv, x))
        }
        test "a fused ReLU6 epilogue equals the convolution then the activation, bit for bit" {
            let conv = Conv.Create(2, 24, 20, [| 3 |], padding = ConvPadding.Explicit 1, seed = 3)
            let x = randomTensor (Random 4) [| 2; 24; 17; 10 |]
            let fused = FusedModule.Create("ConvReLU6_2d", conv, Activation.Create(ActivationKind.ReLU6))
            expectSameBits "ReLU6" (Forward.Run(fused, x)) (Forward.Run(Sequential.Create(conv :> Module, Activation.Create(ActivationKind.ReLU6)), x))
        }
        test "a pending BatchNorm fold gives the bits of its computed weights and stays pending" {
            let conv = Conv.Create(2, 32, 48, [| 3 |], padding = ConvPadding.Explicit 1, seed = 5)
            let x = randomTensor (Random 6) [| 1; 32; 12; 9 |]
            let pending = GemmTests.foldConv conv 7
            let y = Forward.Run(pending, x, twoThreads)
            Expect.isFalse pending.Weight.IsMaterialized "transformed from the recipe"
            expectSameBits "fold" y (Forward.Run(GemmTests.computed (GemmTests.foldConv conv 7), x, twoThreads))
        }
        test "the path is taken only for 3x3, unit stride and dilation, one group, 16 or more channels each way" {
            let shape c = [| 1; c; 10; 10 |]
            let make (cin: int) (cout: int) (k: int) (s: int) (d: int) (g: int) =
                Conv.Create(2, cin, cout, [| k |], [| s |], ConvPadding.Explicit 1, [| d |], g, seed = 1)
            Expect.isTrue (applies (make 16 16 3 1 1 1) (shape 16)) "3x3 unit stride"
            for name, conv, c in
                [ "stride 2", make 16 16 3 2 1 1, 16
                  "dilation 2", make 16 16 3 1 2 1, 16
                  "two groups", make 16 16 3 1 1 2, 16
                  "5x5", make 16 16 5 1 1 1, 16
                  "1x1", make 16 16 1 1 1 1, 16
                  "15 input channels", make 15 16 3 1 1 1, 15
                  "15 output channels", make 16 15 3 1 1 1, 16 ] do
                Expect.isFalse (applies conv (shape c)) name
            let conv1d = Conv.Create(1, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1)
            Expect.isFalse (applies conv1d [| 1; 16; 10 |]) "Conv1d"
            let transposed = Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, transposed = true, seed = 1)
            Expect.isFalse (applies transposed (shape 16)) "transposed"
            let conv3d = Conv.Create(3, 16, 16, [| 1; 3; 3 |], padding = ConvPadding.Explicit [| 1; 1; 1 |], seed = 1)
            Expect.isFalse (applies conv3d [| 1; 16; 1; 10; 10 |]) "Conv3d with a 1x3x3 kernel"
            // 512 channels each way hold 16.8 MB of transformed weights: the 16 tiles of one 7x7 image do not pay for reading
            // them, two images' 32 tiles and one 14x14 image's 49 do; 256 channels (4.2 MB) always take the path.
            let wide = make 512 512 3 1 1 1
            Expect.isFalse (applies wide [| 1; 512; 7; 7 |]) "512 channels, one 7x7 image"
            Expect.isTrue (applies wide [| 2; 512; 7; 7 |]) "512 channels, two 7x7 images"
            Expect.isTrue (applies wide [| 1; 512; 14; 14 |]) "512 channels, one 14x14 image"
            Expect.isTrue (applies (make 256 256 3 1 1 1) [| 1; 256; 7; 7 |]) "256 channels, one 7x7 image"
        }
        test "a Conv3d with a 1x3x3 kernel and depth padding (three output planes from one) equals the reference" {
            let conv3d = Conv.Create(3, 16, 16, [| 1; 3; 3 |], padding = ConvPadding.Explicit [| 1; 1; 1 |], seed = 2)
            ConvKernelsTests.expectConvLaw "Conv3d 1x3x3" conv3d (randomTensor (Random 3) [| 1; 16; 1; 6; 7 |])
        }
        test "the packed weights are G g Gᵀ in float64 rounded once, in the GEMM's panel layout, for plain and pending folded weights" {
            // G of F(2x2, 3x3) (Lavin and Gray 2016); channel counts that leave a partial last panel and an odd last channel.
            let G = array2D [ [ 1.0; 0.0; 0.0 ]; [ 0.5; 0.5; 0.5 ]; [ 0.5; -0.5; 0.5 ]; [ 0.0; 0.0; 1.0 ] ]
            for cin, cout in [ 16, 16; 17, 18; 31, 23; 64, 36 ] do
                for folded in [ false; true ] do
                    let conv = Conv.Create(2, cin, cout, [| 3 |], padding = ConvPadding.Explicit 1, seed = cin + cout)
                    let weight = if folded then (GemmTests.foldConv conv 3).Weight else conv.Weight
                    let packed = Winograd.PackWeights(weight, cin, cout, 2)
                    Expect.equal weight.IsMaterialized (not folded) "a pending fold is packed from its recipe"
                    // The fold's computed elements (or the plain weight), then (G g) Gᵀ, each sum left to right in float64.
                    let w = (if folded then (GemmTests.foldConv conv 3).Weight else conv.Weight).ToArray()
                    let u co ci xi =
                        let i, j = xi / 4, xi % 4
                        let g r c = float w.[((co * cin + ci) * 3 + r) * 3 + c]
                        let gg c = G.[i, 0] * g 0 c + G.[i, 1] * g 1 c + G.[i, 2] * g 2 c
                        float32 (gg 0 * G.[j, 0] + gg 1 * G.[j, 1] + gg 2 * G.[j, 2])
                    let panels = (cout + Gemm.MR - 1) / Gemm.MR
                    let groupLength = panels * cin * Gemm.MR
                    let expected =
                        Array.init (16 * groupLength) (fun at ->
                            let xi, rest = at / groupLength, at % groupLength
                            let lane, ci, p = rest % Gemm.MR, rest / Gemm.MR % cin, rest / (Gemm.MR * cin)
                            let co = p * Gemm.MR + lane
                            if co >= cout then 0f else u co ci xi)
                    Expect.sequenceEqual (Array.map BitConverter.SingleToInt32Bits packed) (Array.map BitConverter.SingleToInt32Bits expected)
                        $"{cin}->{cout}, folded {folded}"
        }
    ]
