/// The engine's float32 exponential (FloatExp), which sigmoid, SiLU and GELU take: against float64's Math.Exp, at its
/// limits, and the same bits at every vector width and on one lane.
module Fusion.Dsl.Tests.Engine.FloatExpTests

open System
open System.Runtime.Intrinsics
open Expecto
open Fusion.Dsl.Engine

/// Relative error of a float32 e^x whose result is a normal number: one ulp at the bottom of a binade (2^-23). The
/// worst of the 2^20 points below is 8.2e-8; a wrong polynomial coefficient or reduction is off by 1e-5 or more.
let private relTol = 1.2e-7
/// Where the result is denormal, its own spacing 2^-149 limits it.
let private denormalAbs = Math.Pow(2.0, -149.0)

let private widths (x: float32[]) =
    let v512 = Vector512.Create<float32>(ReadOnlySpan x) |> FloatExp.Exp
    let v256 = [| for h in 0 .. 1 -> FloatExp.Exp(Vector256.Create<float32>(ReadOnlySpan(x, 8 * h, 8))) |]
    let v128 = [| for q in 0 .. 3 -> FloatExp.Exp(Vector128.Create<float32>(ReadOnlySpan(x, 4 * q, 4))) |]
    [| for i in 0 .. 15 ->
         v512.[i], v256.[i / 8].[i % 8], v128.[i / 4].[i % 4], FloatExp.Exp x.[i] |]

[<Tests>]
let tests =
    testList "Engine.FloatExp" [
        test "e^x is within its tolerance of float64's from the denormal end to overflow" {
            let n = 1 <<< 20
            let mutable worst = 0.0
            let mutable at = 0f
            for i in 0 .. n - 1 do
                let x = float32 (-103.9 + 192.6 * float i / float (n - 1))
                let expected = Math.Exp(float x)
                let actual = float (FloatExp.Exp x)
                if expected >= Math.Pow(2.0, -126.0) then
                    let e = abs (actual - expected) / expected
                    if e > worst then worst <- e; at <- x
                else Expect.isLessThanOrEqual (abs (actual - expected)) denormalAbs $"e^{x} (denormal)"
            Expect.isLessThanOrEqual worst relTol $"worst relative error {worst} at x = {at}"
        }
        test "its limits are float32's: infinity above 88.72, zero far below, NaN kept, e^0 = 1" {
            Expect.equal (FloatExp.Exp Single.PositiveInfinity) Single.PositiveInfinity "e^inf"
            Expect.equal (FloatExp.Exp 89f) Single.PositiveInfinity "e^89 overflows"
            Expect.equal (FloatExp.Exp Single.NegativeInfinity) 0f "e^-inf"
            Expect.equal (FloatExp.Exp -104f) 0f "e^-104 rounds to 0"
            Expect.isTrue (Single.IsNaN(FloatExp.Exp Single.NaN)) "e^nan"
            Expect.equal (FloatExp.Exp 0f) 1f "e^0"
            Expect.isTrue (Single.IsFinite(FloatExp.Exp 88.7f)) "e^88.7 is finite"
        }
        test "every width and one lane give the same bits" {
            let r = Random 5
            for _ in 1 .. 2000 do
                let x = Array.init 16 (fun _ -> float32 (r.NextDouble() * 200.0 - 110.0))
                for i, (a, b, c, d) in Array.indexed (widths x) do
                    let bits (v: float32) = BitConverter.SingleToInt32Bits v
                    Expect.isTrue (bits a = bits b && bits b = bits c && bits c = bits d) $"e^{x.[i]}: {a} {b} {c} {d}"
        }
    ]
