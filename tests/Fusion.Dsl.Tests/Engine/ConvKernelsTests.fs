/// Laws of the convolution kernels: over randomised shapes (ranks 1-3, strides, dilations, groups, depthwise,
/// padding amounts / same / valid, every padding mode, transposed with output padding) the fast kernels equal the
/// float64 reference written from the definition, and the thread count does not change a bit.
module Fusion.Dsl.Tests.Engine.ConvKernelsTests

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Reference
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

/// A random valid convolution and a batched input for it, with a description for failure messages.
let randomConv (rng: Random) : Conv * Tensor =
    let rank = rng.Next(1, 4)
    let transposed = rng.Next(4) = 0
    let groups, cin, cout =
        match rng.Next(3) with
        | 0 -> 1, rng.Next(1, 6), rng.Next(1, 8)
        | 1 -> 2, 2 * rng.Next(1, 4), 2 * rng.Next(1, 5)
        | _ -> let c = rng.Next(2, 6) in c, c, c * rng.Next(1, 3)
    let k = Array.init rank (fun _ -> rng.Next(1, 4))
    let d = Array.init rank (fun _ -> rng.Next(1, 3))
    let unitStride = rng.Next(2) = 0
    let s = Array.init rank (fun _ -> if unitStride then 1 else rng.Next(1, 4))
    let maxSize = match rank with 1 -> 20 | 2 -> 11 | _ -> 6
    if transposed then
        let p = Array.init rank (fun i -> rng.Next(0, d.[i] * (k.[i] - 1) / 2 + 1))
        let op = Array.init rank (fun i -> rng.Next(0, max s.[i] d.[i]))
        let input = Array.init rank (fun _ -> rng.Next(1, maxSize))
        let conv = Conv.Create(rank, cin, cout, k, s, ConvPadding.Explicit p, d, groups, rng.Next(3) > 0,
                               PaddingMode.Zeros, true, op, seed = rng.Next())
        conv, randomTensor rng [| yield rng.Next(1, 3); yield cin; yield! input |]
    else
        let padding, left, right =
            match rng.Next(4) with
            | 0 when unitStride ->
                let total = Array.init rank (fun i -> d.[i] * (k.[i] - 1))
                ConvPadding.Same, Array.map (fun t -> t / 2) total, Array.map (fun t -> t - t / 2) total
            | 1 -> ConvPadding.Valid, Array.zeroCreate rank, Array.zeroCreate rank
            | _ -> let p = Array.init rank (fun _ -> rng.Next(0, 3)) in ConvPadding.Explicit p, p, p
        let mode = [| PaddingMode.Zeros; PaddingMode.Zeros; PaddingMode.Reflect; PaddingMode.Replicate; PaddingMode.Circular |].[rng.Next 5]
        let input =
            Array.init rank (fun i ->
                let needed = max 1 (d.[i] * (k.[i] - 1) + 1 - left.[i] - right.[i])
                let modeMin = if mode = PaddingMode.Zeros then 1 else max left.[i] right.[i] + 1
                max (max needed modeMin) (rng.Next(1, maxSize)))
        let conv = Conv.Create(rank, cin, cout, k, s, padding, d, groups, rng.Next(3) > 0, mode, seed = rng.Next())
        conv, randomTensor rng [| yield rng.Next(1, 3); yield cin; yield! input |]

/// Shapes chosen to reach every code path at realistic sizes: several column strips and row blocks, Toeplitz views
/// with dropped columns, the gather path, plain 1×1 GEMMs, depthwise vector and scalar paths, channel multipliers.
let private pathCases : (string * Conv * int[]) list =
    [ "3x3 pad 1 unit stride (Toeplitz, dropped columns)", Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1), [| 2; 16; 19; 23 |]
      "3x3 stride 2 (gather path, row remainder)", Conv.Create(2, 8, 13, [| 3 |], [| 2 |], ConvPadding.Explicit 1, seed = 2), [| 1; 8; 21; 17 |]
      "5x5 on a 6x6 map (gather plan on one thread, Toeplitz on two: same bits)", Conv.Create(2, 32, 48, [| 5 |], padding = ConvPadding.Explicit 2, seed = 13), [| 1; 32; 6; 6 |]
      "stride 2 with circular padding (phase layout of a mode-padded input)", Conv.Create(2, 6, 10, [| 3 |], [| 2 |], ConvPadding.Explicit 1, paddingMode = PaddingMode.Circular, seed = 14), [| 2; 6; 11; 12 |]
      "7x7 stride 2 stem", Conv.Create(2, 3, 16, [| 7 |], [| 2 |], ConvPadding.Explicit 3, seed = 15), [| 1; 3; 37; 30 |]
      "1x1 (plain GEMM)", Conv.Create(2, 32, 32, [| 1 |], seed = 3), [| 1; 32; 9; 9 |]
      "1x1 stride 2 (downsample)", Conv.Create(2, 12, 20, [| 1 |], [| 2 |], seed = 4), [| 2; 12; 13; 13 |]
      "depthwise 3x3 stride 1 (vector path + tail)", Conv.Create(2, 24, 24, [| 3 |], padding = ConvPadding.Explicit 1, groups = 24, seed = 5), [| 2; 24; 19; 21 |]
      "depthwise 3x3 stride 2 (phase layout, vector path)", Conv.Create(2, 24, 24, [| 3 |], [| 2 |], ConvPadding.Explicit 1, groups = 24, seed = 6), [| 1; 24; 19; 21 |]
      "depthwise multiplier 2, 5x5 dilation 2", Conv.Create(2, 8, 16, [| 5 |], padding = ConvPadding.Explicit 4, dilation = [| 2 |], groups = 8, seed = 7), [| 1; 8; 15; 18 |]
      "grouped 3x3 reflect", Conv.Create(2, 12, 18, [| 3 |], padding = ConvPadding.Explicit 2, groups = 3, paddingMode = PaddingMode.Reflect, dilation = [| 2 |], seed = 8), [| 2; 12; 9; 10 |]
      "3d 3x3x3 pad 1", Conv.Create(3, 4, 6, [| 3 |], padding = ConvPadding.Explicit 1, seed = 9), [| 1; 4; 6; 7; 8 |]
      "1d deep (K = 640: one panel per strip, split rows)", Conv.Create(1, 128, 70, [| 5 |], padding = ConvPadding.Same, seed = 10), [| 1; 128; 40 |]
      "1x1 on 7x7 (49 = 3*16 + 1: the one-column kernel)", Conv.Create(2, 40, 20, [| 1 |], seed = 16), [| 2; 40; 7; 7 |]
      "1x1 deep on 3x6 (K = 300 in two depth chunks, 18 = 16 + 2 columns)", Conv.Create(2, 300, 13, [| 1 |], seed = 17), [| 1; 300; 3; 6 |]
      "1x1 deep, 30 rows by 40 columns over K = 600 (12x32 AVX-512 blocks across three depth chunks, a lone row panel, a half column panel)", Conv.Create(2, 600, 30, [| 1 |], seed = 18), [| 1; 600; 5; 8 |]
      "1x1 with 25 columns (a 12x32 block whose second column panel has 9 valid columns)", Conv.Create(2, 40, 26, [| 1 |], seed = 19), [| 2; 40; 5; 5 |]
      "transposed 4x4 stride 2 grouped", Conv.Create(2, 16, 12, [| 4 |], [| 2 |], ConvPadding.Explicit 1, groups = 2, transposed = true, seed = 11), [| 2; 16; 7; 9 |]
      "transposed 3d with output padding", Conv.Create(3, 3, 5, [| 3 |], [| 2 |], ConvPadding.Explicit 1, transposed = true, outputPadding = [| 1 |], seed = 12), [| 1; 3; 4; 3; 5 |] ]

/// The kernels' law for one case: the two-thread result equals the float64 reference within the kernel tolerance, and
/// one thread gives the same bits.
let expectConvLaw (what: string) (conv: Conv) (x: Tensor) =
    let fast = Forward.Run(conv, x, twoThreads)
    expectClose what Support.Tol.kernelRel Support.Tol.kernelAbs fast (NaiveReference.Conv(conv, x))
    expectSameBits (what + ", threads 1 vs 2") (Forward.Run(conv, x, oneThread)) fast

[<Tests>]
let tests =
    testList "Engine.ConvKernels" [
        test "300 random convolutions equal the float64 reference, one thread and two giving the same bits" {
            let rng = Random 20240601
            for i in 1 .. 300 do
                let conv, x = randomConv rng
                expectConvLaw $"case {i}: {conv} on {Tensor.ShapeString x.Shape}" conv x
        }
        for name, conv, shape in pathCases do
            test $"{name} equals the float64 reference" {
                expectConvLaw name conv (randomTensor (Random 7) shape)
            }
        test "an unbatched input gives the batched result without the batch dimension" {
            let conv = Conv.Create(2, 3, 5, [| 3 |], padding = ConvPadding.Explicit 1, seed = 3)
            let x = randomTensor (Random 3) [| 3; 6; 7 |]
            let batched = Forward.Run(conv, x.Reshape(1, 3, 6, 7))
            expectSameBits "unbatched" (Forward.Run(conv, x)) (batched.Reshape(5, 6, 7))
        }
    ]
