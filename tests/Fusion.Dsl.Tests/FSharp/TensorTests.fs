/// The F# Tensor module: building and reading tensors without spans.
module Fusion.Dsl.Tests.FSharp.TensorTests

open System
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tensors
open Fusion.Dsl.FSharp

[<Tests>]
let tests =
    testList "FSharp.Tensor" [
        test "shape is an int list that %A prints like PyTorch's size" {
            let t = Tensor.zeros [ 1; 3; 4; 5 ]
            Expect.equal (Tensor.shape t) [ 1; 3; 4; 5 ] "shape"
            Expect.equal (sprintf "%A" (Tensor.shape t)) "[1; 3; 4; 5]" "%A"
            Expect.equal (Tensor.rank t, Tensor.count t) (4, 60) "rank and count"
        }
        test "ofArray and toArray round-trip in row-major order, and item reads by index" {
            let data = [| for i in 0 .. 23 -> float32 i |]
            let t = Tensor.ofArray [ 2; 3; 4 ] data
            Expect.equal (Tensor.toArray t) data "round trip"
            // Row-major: element [1, 2, 3] is at 1*12 + 2*4 + 3 = 23.
            Expect.equal (t |> Tensor.item [ 1; 2; 3 ]) 23.0f "item"
            Expect.equal (t |> Tensor.item [ -1; 0; -1 ]) 15.0f "negative indices count from the end, as in PyTorch"
            Expect.equal (t |> Tensor.reshape [ 4; -1 ] |> Tensor.shape) [ 4; 6 ] "reshape infers -1"
        }
        test "a wrong element count or index is refused with the problem named" {
            let e = Support.throwsOf<ArgumentException> (fun () -> Tensor.ofArray [ 2; 2 ] [| 1.0f |] |> ignore)
            Expect.stringContains e.Message "[2, 2]" "names the shape"
            let t = Tensor.zeros [ 2; 3 ]
            let e2 = Support.throwsOf<ArgumentException> (fun () -> t |> Tensor.item [ 0; 3 ] |> ignore)
            Expect.stringContains e2.Message "dimension 1 of size 3" "names the dimension"
            let e3 = Support.throwsOf<ArgumentException> (fun () -> t |> Tensor.item [ 0 ] |> ignore)
            Expect.stringContains e3.Message "2 dimensions" "names the rank"
        }
        test "randn is deterministic per seed, standard normal in distribution" {
            let a = Tensor.randn 3 [ 10000 ]
            Expect.equal a (Tensor.randn 3 [ 10000 ]) "same seed, same bits"
            Expect.notEqual a (Tensor.randn 4 [ 10000 ]) "other seed"
            let xs = Tensor.toArray a |> Array.map float
            let mean = Array.average xs
            let var = xs |> Array.averageBy (fun x -> (x - mean) ** 2.0)
            // Law: the sample mean of n standard normals has standard deviation 1/sqrt(n) = 0.01; 5 sigma.
            let fiveSigmaOfMean = 0.05
            Expect.isLessThan (abs mean) fiveSigmaOfMean "mean near 0"
            // The sample variance has standard deviation about sqrt(2/n) = 0.014; 5 sigma.
            let fiveSigmaOfVariance = 0.071
            Expect.isLessThan (abs (var - 1.0)) fiveSigmaOfVariance "variance near 1"
        }
        test "full and maxAbsDiff" {
            Expect.equal (Tensor.maxAbsDiff (Tensor.full 2.0f [ 3 ]) (Tensor.zeros [ 3 ])) 2.0 "difference"
        }
    ]
