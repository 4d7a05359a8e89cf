/// The write-out every kernel shares: a run of values through act(x·scale + shift), vector body and masked tail, must
/// give each element exactly what the one-value formula gives, and touch nothing past the run; and a convolution's
/// fused write-out (in registers for full 12x32 blocks on AVX-512, through a tile elsewhere) is that formula applied
/// to its plain product.
module Fusion.Dsl.Tests.Engine.EpilogueTests

#nowarn "9" // NativePtr over pinned arrays

open System
open Expecto
open Microsoft.FSharp.NativeInterop
open Fusion.Dsl.Engine
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.Engine.EngineSupport

/// The vector exponentials (Vector256.Exp and Vector512.Exp, which agree lane for lane) against MathF.Exp: at most this
/// many float32 ulps apart (measured over 1.6 million values in [-20, 20]).
let private expUlps = 2

/// SiLU's x / (1 + exp(-x)) carries the exponential's difference through two more roundings (the sum and the
/// quotient, half an ulp each): the vector and one-value forms are at most this many ulps apart.
let private siluUlps = expUlps + 1

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
        for name, conv, shape in
            [ "1x1, 30 channels on 8x8 (full 12x32 blocks and a lone row panel)", Conv.Create(2, 40, 30, [| 1 |], bias = false, seed = 1), [| 1; 40; 8; 8 |]
              "1x1 on 7x7 (a 12x32 block, then half and one-column panels)", Conv.Create(2, 24, 24, [| 1 |], bias = false, seed = 2), [| 2; 24; 7; 7 |]
              "3x3 pad 1 on 9x9 (Toeplitz columns dropped inside tiles)", Conv.Create(2, 8, 26, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = 3), [| 1; 8; 9; 9 |] ] do
            test $"a convolution's fused write-out is the one-value formula on its plain product: {name}" {
                let x = randomTensor (Random 4) shape
                let plain = (ConvKernels.Forward(conv, x, Epilogue.None, kernelPass ())).ToArray()
                let channels, plane = conv.OutChannels, plain.Length / (shape.[0] * conv.OutChannels)
                let rng = Random 5
                let scale = Array.init channels (fun _ -> float32 (rng.NextDouble() + 0.5))
                let shift = Array.init channels (fun _ -> float32 (rng.NextDouble() - 0.5))
                for act in acts do
                    for withScale in [ false; true ] do
                        let ep = Epilogue((if withScale then scale else null), shift, act)
                        let fused = (ConvKernels.Forward(conv, x, ep, kernelPass ())).ToArray()
                        for i in 0 .. plain.Length - 1 do
                            let c = (i / plane) % channels
                            let expected = Epilogue.Apply(plain.[i], scale.[c], shift.[c], withScale, act)
                            if act = Act.SiLU then
                                Expect.isLessThanOrEqual (ulps fused.[i] expected) siluUlps $"{act} element {i}"
                            elif BitConverter.SingleToInt32Bits fused.[i] <> BitConverter.SingleToInt32Bits expected then
                                failtest $"{act} scale={withScale} element {i}: {fused.[i]} against {expected}"
            }
        test "NaN passes through every activation in the masked tail as in the vector body" {
            let src = Array.init 12 (fun i -> if i % 3 = 0 then nanf else float32 i)
            for act in acts do
                let dst = applyRun src 11 1.0f 0.0f false act
                for i in 0 .. 10 do
                    if Single.IsNaN src.[i] then Expect.isTrue (Single.IsNaN dst.[i]) $"{act}: NaN at {i} stays NaN"
        }
    ]
