/// Laws of the pooling kernels against the float64 reference over random windows: MaxPool2d with padding (as -inf),
/// dilation and ceil_mode; AvgPool2d with count_include_pad and ceil_mode; AdaptiveAvgPool2d's floor/ceil windows.
module Fusion.Dsl.Tests.Engine.PoolKernelsTests

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Reference
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

[<Tests>]
let tests =
    testList "Engine.PoolKernels" [
        test "300 random MaxPool2d (padding, dilation, strides, ceil_mode) equal the reference exactly" {
            let rng = Random 3
            for i in 1 .. 300 do
                let k = [| rng.Next(1, 4); rng.Next(1, 4) |]
                let p = k |> Array.map (fun k -> rng.Next(0, k / 2 + 1))
                let d = [| rng.Next(1, 3); rng.Next(1, 3) |]
                let s = [| rng.Next(1, 4); rng.Next(1, 4) |]
                let m = MaxPool2d.Create(k, s, p, d, rng.Next(2) = 0)
                let size i = max (d.[i] * (k.[i] - 1) + 1 - 2 * p.[i]) (rng.Next(1, 30))
                let x = randomTensor rng [| rng.Next(1, 3); rng.Next(1, 4); size 0; size 1 |]
                // Maxima are exact in any order of comparison; a window over padding only is -inf, as in PyTorch.
                let actual, expected = Forward.Run(m, x), NaiveReference.MaxPool2d(m, x)
                Expect.sequenceEqual actual.Dimensions expected.Dimensions $"case {i}: shape"
                Expect.sequenceEqual (actual.ToArray()) (expected.ToArray()) $"case {i}: {m} on {Tensor.ShapeString x.Shape}"
        }
        test "a NaN in a max-pool window is the window's result, as in PyTorch" {
            let x = tensorOf [| 1f; nanf; 3f; 4f |] [| 1; 1; 2; 2 |]
            let y = Forward.Run(MaxPool2d.Create([| 2 |]), x)
            Expect.isTrue (Single.IsNaN(float32 y.[0])) "NaN propagates"
        }
        test "200 random AvgPool2d equal the reference" {
            let rng = Random 4
            for i in 1 .. 200 do
                let k = [| rng.Next(1, 5); rng.Next(1, 5) |]
                let p = k |> Array.map (fun k -> rng.Next(0, k / 2 + 1))
                let s = [| rng.Next(1, 4); rng.Next(1, 4) |]
                let m = AvgPool2d.Create(k, s, p, rng.Next(2) = 0, rng.Next(2) = 0)
                let size i = max (k.[i] - 2 * p.[i]) (rng.Next(1, 12))
                let x = randomTensor rng [| rng.Next(1, 3); rng.Next(1, 4); size 0; size 1 |]
                expectClose $"case {i}: {m} on {Tensor.ShapeString x.Shape}" Support.Tol.kernelRel Support.Tol.kernelAbs (Forward.Run(m, x)) (NaiveReference.AvgPool2d(m, x))
        }
        test "100 random AdaptiveAvgPool2d equal the reference, including outputs larger than the input" {
            let rng = Random 5
            for i in 1 .. 100 do
                let o = [| rng.Next(1, 8); rng.Next(1, 8) |]
                let m = AdaptiveAvgPool2d.Create(o)
                let x = randomTensor rng [| rng.Next(1, 3); rng.Next(1, 4); rng.Next(1, 15); rng.Next(1, 15) |]
                expectClose $"case {i}: {m} on {Tensor.ShapeString x.Shape}" Support.Tol.kernelRel Support.Tol.kernelAbs
                    (Forward.Run(m, x)) (NaiveReference.AdaptiveAvgPool2d(x, o.[0], o.[1]))
        }
        // Windows of whole rows are summed as one run in vector partial sums: the global pool of a squeeze-excitation or a
        // classifier head, a column of row bands, and long rows inside a window.
        for o, shape in [ [| 1; 1 |], [| 2; 16; 56; 56 |]; [| 1; 1 |], [| 1; 8; 7; 7 |]; [| 3; 1 |], [| 1; 4; 40; 37 |]; [| 2; 2 |], [| 1; 3; 9; 90 |] ] do
            test $"AdaptiveAvgPool2d({o.[0]}, {o.[1]}) over {Tensor.ShapeString shape} equals the reference, one thread and two giving the same bits" {
                let m = AdaptiveAvgPool2d.Create(o)
                let x = randomTensor (Random 9) shape
                let fast = Forward.Run(m, x, twoThreads)
                expectClose "adaptive average" Support.Tol.kernelRel Support.Tol.kernelAbs fast (NaiveReference.AdaptiveAvgPool2d(x, o.[0], o.[1]))
                expectSameBits "threads 1 vs 2" (Forward.Run(m, x, oneThread)) fast
            }
        test "pools accept an unbatched [C, H, W] input" {
            let x = randomTensor (Random 6) [| 3; 7; 7 |]
            let m = MaxPool2d.Create([| 3 |], [| 2 |], [| 1 |])
            expectSameBits "unbatched" (Forward.Run(m, x)) ((Forward.Run(m, x.Reshape(1, 3, 7, 7))).Reshape(3, 4, 4))
        }
    ]
