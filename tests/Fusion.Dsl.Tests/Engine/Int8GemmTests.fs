/// The int8 GEMM against its definition, C[r, j] = Σ_k W[r, k]·(X[k, j] − z) summed in int64: every path (AVX-512BW,
/// AVX2, scalar: Engine.InstructionSet reruns these at each level) must give the exact sums, for 7-bit activations
/// (the vpmaddubsw form) and for the full byte range (the widening form), at sizes that are not multiples of the tile.
module Fusion.Dsl.Tests.Engine.Int8GemmTests

open System
open Expecto
open Fusion.Dsl.Engine

/// C by the definition, in int64 (so an overflow of the kernel's int32 or a saturated pair would show).
let private definition (w: sbyte[]) (x: byte[]) (rows: int) (depth: int) (columns: int) (zero: int) =
    Array.init (rows * columns) (fun i ->
        let r, j = i / columns, i % columns
        let mutable sum = 0L
        for k in 0 .. depth - 1 do sum <- sum + int64 w.[r * depth + k] * int64 (int x.[k * columns + j] - zero)
        sum)

let private run (w: sbyte[]) (x: byte[]) rows depth columns zero threads =
    let c = Array.zeroCreate<int> (rows * columns)
    Int8Gemm.Run(Int8Weights.Pack(ReadOnlySpan w, rows, depth), x, columns, zero, c, threads)
    c

let private expectExact what (actual: int[]) (expected: int64[]) =
    Expect.equal actual.Length expected.Length $"{what}: size"
    for i in 0 .. actual.Length - 1 do
        if int64 actual.[i] <> expected.[i] then failtestf "%s: element %d is %d, the definition gives %d" what i actual.[i] expected.[i]

[<Tests>]
let tests =
    testList "Engine.Int8Gemm" [
        test "random problems give the exact integer sums, for 7-bit and full-range activations and any zero point" {
            let rng = Random 20261207
            let sizes = [ 1, 1, 1; 3, 5, 7; 4, 4, 32; 5, 9, 33; 17, 37, 45; 64, 147, 200; 8, 1152, 49 ]
            for rows, depth, columns in sizes do
                for top, zero in [ 127, 0; 127, 64; 255, 0; 255, 128; 255, 255 ] do
                    let w = Array.init (rows * depth) (fun _ -> sbyte (rng.Next(-128, 128)))
                    let x = Array.init (depth * columns) (fun _ -> byte (rng.Next(0, top + 1)))
                    let what = $"{rows}x{depth}x{columns}, activations 0..{top}, zero point {zero}"
                    expectExact what (run w x rows depth columns zero 1) (definition w x rows depth columns zero)
        }
        test "the extremes do not saturate: 127·(−128) over a long depth on the 7-bit form, 255·(−128) on the widening one" {
            let rows, depth, columns = 5, 4099, 37
            let w = Array.create (rows * depth) -128y
            for top in [ 127uy; 255uy ] do
                let x = Array.create (depth * columns) top
                let c = run w x rows depth columns 0 1
                expectExact $"all {top}" c (definition w x rows depth columns 0)
                Expect.equal c.[0] (-128 * int top * depth) "one closed-form entry"
        }
        test "two threads give the bits of one" {
            let rng = Random 7
            let rows, depth, columns = 33, 300, 1000
            let w = Array.init (rows * depth) (fun _ -> sbyte (rng.Next(-128, 128)))
            let x = Array.init (depth * columns) (fun _ -> byte (rng.Next(0, 256)))
            Expect.sequenceEqual (run w x rows depth columns 3 2) (run w x rows depth columns 3 1) "same results"
        }
        test "sizes that do not match, and a zero point outside a byte, are refused by name" {
            let w = Int8Weights.Pack(ReadOnlySpan(Array.zeroCreate<sbyte> 6), 2, 3)
            Expect.throwsT<ArgumentException> (fun () -> Int8Gemm.Run(w, Array.zeroCreate 5, 2, 0, Array.zeroCreate 4)) "activations for 3x2"
            Expect.throwsT<ArgumentException> (fun () -> Int8Gemm.Run(w, Array.zeroCreate 6, 2, 0, Array.zeroCreate 5)) "results for 2x2"
            Expect.throwsT<ArgumentException> (fun () -> Int8Gemm.Run(w, Array.zeroCreate 6, 2, 256, Array.zeroCreate 4)) "zero point 256"
            Expect.throwsT<ArgumentException> (fun () -> Int8Weights.Pack(ReadOnlySpan(Array.zeroCreate<sbyte> 5), 2, 3) |> ignore) "5 weights for 2x3"
        }
    ]
