/// The write-out every kernel shares: a run of values through act(x·scale + shift), vector body and masked tail, must
/// give each element exactly what the one-value formula gives, and touch nothing past the run.
module Fusion.Dsl.Tests.Engine.EpilogueTests

#nowarn "9" // NativePtr over pinned arrays

open System
open Expecto
open Microsoft.FSharp.NativeInterop
open Fusion.Dsl.Engine

/// SiLU's vector exp (Vector256.Exp) and MathF.Exp may each round differently: within this many float32 ulps.
let private siluUlps = 2

let private ulps (a: float32) (b: float32) = abs (BitConverter.SingleToInt32Bits a - BitConverter.SingleToInt32Bits b)

let private acts = [ Act.None; Act.ReLU; Act.ReLU6; Act.Hardswish; Act.Hardsigmoid; Act.SiLU ]

/// Runs ApplyRun over `count` values of `src` into a destination pre-filled with a sentinel, returning the destination.
let private applyRun (src: float32[]) count scale shift hasScale act =
    let dst = Array.create (src.Length) 12345.0f
    use ps = fixed src
    use pd = fixed dst
    Epilogue.ApplyRun(ps, pd, count, scale, shift, hasScale, act)
    dst

[<Tests>]
let tests =
    testList "Engine.Epilogue" [
        test "every run length gives each element the one-value formula, and nothing past the run is written" {
            let rng = Random 11
            let src = Array.init 40 (fun _ -> float32 (rng.NextDouble() * 16.0 - 8.0))
            for act in acts do
                for hasScale in [ false; true ] do
                    for count in 0 .. 33 do
                        let dst = applyRun src count 0.75f -0.5f hasScale act
                        for i in 0 .. count - 1 do
                            let expected = Epilogue.Apply(src.[i], 0.75f, -0.5f, hasScale, act)
                            // Every form but SiLU is exact: the same IEEE operations lane by lane.
                            if act = Act.SiLU then
                                Expect.isLessThanOrEqual (ulps dst.[i] expected) siluUlps $"{act} count {count} element {i}"
                            else
                                Expect.equal (BitConverter.SingleToInt32Bits dst.[i]) (BitConverter.SingleToInt32Bits expected)
                                    $"{act} scale={hasScale} count {count} element {i}"
                        for i in count .. src.Length - 1 do
                            Expect.equal dst.[i] 12345.0f $"{act} count {count}: element {i} past the run untouched"
        }
        test "NaN passes through every activation in the masked tail as in the vector body" {
            let src = Array.init 12 (fun i -> if i % 3 = 0 then nanf else float32 i)
            for act in acts do
                let dst = applyRun src 11 1.0f 0.0f false act
                for i in 0 .. 10 do
                    if Single.IsNaN src.[i] then Expect.isTrue (Single.IsNaN dst.[i]) $"{act}: NaN at {i} stays NaN"
        }
    ]
