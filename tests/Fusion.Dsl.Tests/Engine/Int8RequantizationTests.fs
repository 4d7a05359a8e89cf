/// The requantization of int32 sums to bytes against its definition, written here in float32 steps:
/// y = clamp(round_half_even(max?((sum + b)·m, 0) + z), 0, 255). The vector path (16 at a time) and the scalar one must
/// give the definition's bits for ties, both saturations, ReLU and long rows (Engine.InstructionSet reruns these at each
/// level), and the GEMM must requantize its tiles as the definition does to its sums.
module Fusion.Dsl.Tests.Engine.Int8RequantizationTests

open System
open Expecto
open Fusion.Dsl.Engine

/// The definition, in float32 as oneDNN computes it.
let private definition (sum: int) (b: float32) (m: float32) (zero: int) (relu: bool) =
    let mutable v = (float32 sum + b) * m
    if relu then v <- max v 0.0f
    v <- MathF.Round(v + float32 zero, MidpointRounding.ToEven)
    byte (min 255.0f (max 0.0f v))

let private row (rq: Int8Requantization) (sums: int[]) shift channel =
    let dst = Array.zeroCreate<byte> sums.Length
    rq.Row(ReadOnlySpan sums, shift, Span dst, channel)
    dst

[<Tests>]
let tests =
    testList "Engine.Int8Requantization" [
        test "a row of sums, vector and tail alike, gives the definition's bytes: ties to even, both saturations, with and without ReLU" {
            let rng = Random 3
            // Ties: multiplier 0.5 puts every odd sum exactly half-way; a large multiplier saturates at 255, a negative one at 0.
            for m, b in [ 0.5f, 0.0f; 0.5f, 0.5f; 0.013f, -3.25f; 1000.0f, 0.0f; -0.7f, 1.5f; 0.00390625f, 0.0f ] do
                for zero in [ 0; 3; 128; 255 ] do
                    for relu in [ false; true ] do
                        let rq = Int8Requantization([| 1.0f; m |], [| 0.0f; b |], zero, relu)
                        for length in [ 1; 15; 16; 17; 33; 100 ] do
                            let sums = Array.init length (fun _ -> rng.Next(-3000, 3000))
                            let shift = rng.Next(-50, 50)
                            let actual = row rq sums shift 1
                            for i in 0 .. length - 1 do
                                let expected = definition (sums.[i] - shift) b m zero relu
                                if actual.[i] <> expected then
                                    failtestf "m %g, b %g, zero %d, relu %b, length %d: element %d (sum %d) is %d, the definition gives %d" m b zero relu length i (sums.[i] - shift) actual.[i] expected
                            Expect.equal (rq.Apply(sums.[0] - shift, 1)) (definition (sums.[0] - shift) b m zero relu) "the scalar form"
        }
        test "the convolution's requantized bytes are its sums requantized by the definition, channel by channel" {
            let rng = Random 9
            let cout, h, w = 6, 9, 11
            // A plain convolution (the GEMM path) and a depthwise one (the float-sum path).
            for cin, groups in [ 5, 1; 6, 6 ] do
              let weights = Array.init (cout * (cin / groups) * 9) (fun _ -> sbyte (rng.Next(-128, 128)))
              let x = Array.init (2 * cin * h * w) (fun _ -> byte (rng.Next(0, 256)))
              let conv = Int8Convolution(ReadOnlySpan weights, cout, cin / groups, struct (3, 3), struct (1, 1), struct (1, 1), struct (1, 1), groups)
              let ms = Array.init cout (fun c -> 0.001f * float32 (c + 1))
              let bs = Array.init cout (fun c -> float32 c * 7.5f - 20.0f)
              for relu in [ false; true ] do
                let rq = Int8Requantization(ms, bs, 100, relu)
                let sums = conv.Accumulate(x, 2, h, w, 17, 1)
                let bytes = conv.Requantize(x, 2, h, w, 17, rq, 2)
                let plane = h * w
                for i in 0 .. sums.Length - 1 do
                    let c = i / plane % cout
                    if bytes.[i] <> definition sums.[i] bs.[c] ms.[c] 100 relu then
                        failtestf "groups %d, relu %b: element %d (channel %d) is %d, the definition gives %d" groups relu i c bytes.[i] (definition sums.[i] bs.[c] ms.[c] 100 relu)
        }
        test "a convolution with a fused add gives its requantized bytes put through the add with the residual, element by element (GEMM and depthwise, 1 and 2 threads)" {
            let rng = Random 12
            let cout, h, w = 8, 13, 21
            // A 3x3 and a 1x1 GEMM convolution (batch 2, so rows of tiles cross images) and a depthwise one.
            for cin, groups, k, pad in [ 5, 1, 3, 1; 7, 1, 1, 0; 8, 8, 3, 1 ] do
              let weights = Array.init (cout * (cin / groups) * k * k) (fun _ -> sbyte (rng.Next(-128, 128)))
              let x = Array.init (2 * cin * h * w) (fun _ -> byte (rng.Next(0, 128)))
              let conv = Int8Convolution(ReadOnlySpan weights, cout, cin / groups, struct (k, k), struct (1, 1), struct (pad, pad), struct (1, 1), groups)
              let rq = Int8Requantization(Array.init cout (fun c -> 0.002f * float32 (c + 1)), Array.init cout (fun c -> float32 c - 3.0f), 90, false)
              let residual = Array.init (2 * cout * h * w) (fun _ -> byte (rng.Next(0, 256)))
              for relu in [ false; true ] do
                let add = Int8Add(0.05, 90, 0.031, 128, 0.07, 10L, relu, false)
                let plain = conv.Requantize(x, 2, h, w, 17, rq, 1)
                for threads in [ 1; 2 ] do
                    let fused = conv.Requantize(x, 2, h, w, 17, rq, residual, add, threads)
                    for i in 0 .. plain.Length - 1 do
                        let expected = add.Apply(plain.[i], residual.[i])
                        if fused.[i] <> expected then
                            failtestf "cin %d, groups %d, %dx%d, relu %b, %d threads: element %d is %d, the convolution then the add give %d" cin groups k k relu threads i fused.[i] expected
              Expect.throwsT<ArgumentException> (fun () -> conv.Requantize(x, 2, h, w, 17, rq, residual.[1..], Int8Add(0.05, 90, 0.031, 128, 0.07, 10L, false, false)) |> ignore) "a residual one byte short"
              Expect.throwsT<ArgumentException> (fun () -> conv.Requantize(x, 2, h, w, 17, rq, residual, Int8Add(0.05, 0, 0.031, 0, 0.07, 0L, false, true)) |> ignore) "a signed add after a quint8 convolution"
        }
        test "the linear layer's requantized bytes are its sums requantized by the definition, feature by feature" {
            let rng = Random 10
            let rows, inF, outF = 7, 45, 19
            let weights = Array.init (outF * inF) (fun _ -> sbyte (rng.Next(-128, 128)))
            let x = Array.init (rows * inF) (fun _ -> byte (rng.Next(0, 128)))
            let linear = Int8Linear(ReadOnlySpan weights, outF, inF)
            let ms = Array.init outF (fun o -> 0.002f + 0.0001f * float32 o)
            let bs = Array.init outF (fun o -> float32 o - 9.0f)
            let rq = Int8Requantization(ms, bs, 60, false)
            let sums = linear.Accumulate(x, 64, 1)
            let bytes = linear.Requantize(x, 64, rq, 1)
            for i in 0 .. sums.Length - 1 do
                let o = i % outF
                Expect.equal bytes.[i] (definition sums.[i] bs.[o] ms.[o] 60 false) $"element {i}"
        }
        test "constants that are not finite, arrays of different lengths, a zero point outside a byte and a channel count that differs are refused" {
            Expect.throwsT<ArgumentException> (fun () -> Int8Requantization([| nanf |], [| 0.0f |], 0, false) |> ignore) "NaN multiplier"
            Expect.throwsT<ArgumentException> (fun () -> Int8Requantization([| 1.0f |], [| infinityf |], 0, false) |> ignore) "infinite bias"
            Expect.throwsT<ArgumentException> (fun () -> Int8Requantization([| 1.0f; 2.0f |], [| 0.0f |], 0, false) |> ignore) "lengths differ"
            Expect.throwsT<ArgumentException> (fun () -> Int8Requantization([| 1.0f |], [| 0.0f |], 256, false) |> ignore) "zero point 256"
            let conv = Int8Convolution(ReadOnlySpan(Array.zeroCreate<sbyte> 2), 2, 1, struct (1, 1), struct (1, 1), struct (0, 0), struct (1, 1), 1)
            Expect.throwsT<ArgumentException> (fun () -> conv.Requantize(Array.zeroCreate 4, 1, 2, 2, 0, Int8Requantization([| 1.0f |], [| 0.0f |], 0, false)) |> ignore) "one channel for two"
        }
    ]
