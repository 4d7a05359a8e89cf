/// The quantized add against its definition, written here in float32 steps as PyTorch 1.13's CPU kernel computes it:
/// q = clamp(zp + round_half_even(max?((a − a_zp)·a_scale + (b − b_zp)·b_scale, 0)·(1/scale)), qmin, qmax). The vector
/// path (16 at a time) and the scalar tail must give the definition's bits for both dtypes, ties, both saturations,
/// sums beyond int64 and ReLU, in place too (Engine.InstructionSet reruns these at each level); PyTorch's own outputs are checked through
/// QFunctional in Quantization.QuantizedModules.
module Fusion.Dsl.Tests.Engine.Int8AddTests

open System
open Expecto
open Fusion.Dsl.Engine

/// The definition on stored bytes (qint8 read as two's complement).
let private definition (a: byte) (b: byte) sa za sb zb (scale: float) (zp: int64) relu signed =
    let value (x: byte) = if signed then int (sbyte x) else int x
    let mutable sum = float32 (value a - za) * float32 sa + float32 (value b - zb) * float32 sb
    if relu then sum <- max sum 0.0f
    let q = float32 zp + MathF.Round(sum * (1.0f / float32 scale), MidpointRounding.ToEven)
    let lo, hi = if signed then -128.0f, 127.0f else 0.0f, 255.0f
    // C++'s cast to int64 of a value beyond int64 (or NaN) gives int64's minimum on x86, which clamps to the dtype's.
    let q = if q >= -9.223372E18f && q < 9.223372E18f then q else lo
    // A qint8 value is stored as its two's complement byte.
    byte (int (min hi (max lo q)) &&& 0xFF)

[<Tests>]
let tests =
    testList "Engine.Int8Add" [
        test "runs of every length give the definition's bytes: both dtypes, ties, saturation, ReLU" {
            let rng = Random 21
            // (a scale, b scale, output scale): equal scales put sums on ties; a tiny output scale saturates both ways.
            // 1e-40 is subnormal in float32: its inverse is infinite, so every sum is beyond int64 (or NaN when 0).
            for sa, sb, scale in [ 0.1, 0.1, 0.2; 0.05, 0.031, 0.07; 0.5, 0.25, 0.001; 0.02, 0.9, 3.0; 0.1, 0.1, 1e-40 ] do
                for signed in [ false; true ] do
                    let zeros = if signed then [ -3, 5, 0L; 0, 0, -128L ] else [ 0, 128, 10L; 255, 3, 200L ]
                    for za, zb, zp in zeros do
                        for relu in [ false; true ] do
                            let add = Int8Add(sa, za, sb, zb, scale, zp, relu, signed)
                            for length in [ 1; 15; 16; 17; 47; 100 ] do
                                let a = Array.init length (fun _ -> byte (rng.Next(0, 256)))
                                let b = Array.init length (fun _ -> byte (rng.Next(0, 256)))
                                let y = Array.zeroCreate<byte> length
                                add.Run(a, b, y, 0, length)
                                for i in 0 .. length - 1 do
                                    let expected = definition a.[i] b.[i] sa za sb zb scale zp relu signed
                                    if y.[i] <> expected then
                                        failtestf "scales %g %g -> %g, zero points %d %d -> %d, relu %b, signed %b, length %d: element %d is %d, the definition gives %d" sa sb scale za zb zp relu signed length i y.[i] expected
                                    Expect.equal (add.Apply(a.[i], b.[i])) expected "the scalar form"
        }
        test "a run in place (the output is the first input) and a run over part of the arrays give the same bytes" {
            let rng = Random 22
            let add = Int8Add(0.05, 90, 0.031, 128, 0.07, 10L, true, false)
            let a = Array.init 200 (fun _ -> byte (rng.Next(0, 256)))
            let b = Array.init 200 (fun _ -> byte (rng.Next(0, 256)))
            let y = Array.zeroCreate<byte> 200
            add.Run(a, b, y, 0, 200)
            let inPlace = Array.copy a
            add.Run(inPlace, b, inPlace, 0, 200)
            Expect.sequenceEqual inPlace y "in place"
            let part = Array.zeroCreate<byte> 200
            add.Run(a, b, part, 37, 101)
            Expect.sequenceEqual part.[37 .. 137] y.[37 .. 137] "elements 37..137"
            Expect.isTrue (Array.forall ((=) 0uy) part.[.. 36] && Array.forall ((=) 0uy) part.[138 ..]) "nothing outside the range written"
        }
        test "scales that are not positive and finite, zero points outside the dtype and ranges outside the arrays are refused by name" {
            Expect.throwsT<ArgumentException> (fun () -> Int8Add(0.0, 0, 0.1, 0, 0.1, 0L, false, false) |> ignore) "a zero scale"
            Expect.throwsT<ArgumentException> (fun () -> Int8Add(0.1, 0, nan, 0, 0.1, 0L, false, false) |> ignore) "a NaN scale"
            Expect.throwsT<ArgumentException> (fun () -> Int8Add(0.1, 0, 0.1, 0, 1e-300, 0L, false, false) |> ignore) "a scale that is 0 in float32"
            Expect.throwsT<ArgumentException> (fun () -> Int8Add(0.1, 256, 0.1, 0, 0.1, 0L, false, false) |> ignore) "zero point 256 for quint8"
            Expect.throwsT<ArgumentException> (fun () -> Int8Add(0.1, 0, 0.1, 0, 0.1, 128L, false, true) |> ignore) "zero point 128 for qint8"
            let add = Int8Add(0.1, 0, 0.1, 0, 0.1, 0L, false, false)
            Expect.throwsT<ArgumentException> (fun () -> add.Run(Array.zeroCreate 10, Array.zeroCreate 9, Array.zeroCreate 10, 0, 10)) "a second input one short"
            Expect.throwsT<ArgumentException> (fun () -> add.Run(Array.zeroCreate 10, Array.zeroCreate 10, Array.zeroCreate 10, -1, 2)) "a negative start"
        }
    ]
