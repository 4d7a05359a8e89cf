/// Laws of Linear: the dot-product (few rows) and GEMM (many rows) paths equal the float64 reference for any
/// leading dimensions, with and without bias.
module Fusion.Dsl.Tests.Engine.LinearKernelsTests

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
    testList "Engine.LinearKernels" [
        test "200 random Linear layers over random leading dimensions equal the float64 reference" {
            let rng = Random 11
            for i in 1 .. 200 do
                let inF = rng.Next(1, 70)
                let outF = rng.Next(1, 40)
                let lin = Linear.Create(inF, outF, rng.Next(3) > 0, seed = rng.Next())
                let lead = Array.init (rng.Next(0, 3)) (fun _ -> rng.Next(1, 9))
                let x = randomTensor rng (Array.append lead [| inF |])
                let what = $"case {i}: {lin} on {Tensor.ShapeString x.Shape}"
                let fast = Forward.Run(lin, x, twoThreads)
                expectClose what Support.Tol.kernelRel Support.Tol.kernelAbs fast (NaiveReference.Linear(lin, x))
                expectSameBits (what + ", threads 1 vs 2") (Forward.Run(lin, x, oneThread)) fast
        }
        test "a wide classifier (batch 1 and batch 64) equals the float64 reference" {
            let lin = Linear.Create(1280, 1000, seed = 5)
            for rows in [ 1; 64 ] do
                let x = randomTensor (Random rows) [| rows; 1280 |]
                expectClose $"rows {rows}" Support.Tol.kernelRel Support.Tol.kernelAbs (Forward.Run(lin, x)) (NaiveReference.Linear(lin, x))
        }
    ]
