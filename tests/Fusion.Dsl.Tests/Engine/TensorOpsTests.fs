/// Laws of the engine's element-wise binary operations: over random broadcasting shape pairs, every output element is
/// the one float32 operation on the two elements broadcasting pairs it with (computed here element by element from the
/// definition), so the bits must equal; the thread count and where a row or a work item starts change none of them.
module Fusion.Dsl.Tests.Engine.TensorOpsTests

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.Engine.EngineSupport

/// `a op b` from the definition of broadcasting: the output index read back into each operand's own index, one
/// float32 operation per element.
let private definition (op: TensorOps.Binary) (a: Tensor) (b: Tensor) =
    let rank = max a.Rank b.Rank
    let dimOf (t: Tensor) i = if i < rank - t.Rank then 1 else t.Size(i - (rank - t.Rank))
    let shape = Array.init rank (fun i -> if dimOf a i = 1 then dimOf b i else dimOf a i)
    let index (t: Tensor) (idx: int[]) =
        let mutable flat = 0
        for i in 0 .. t.Rank - 1 do
            let d = t.Size i
            let k = idx.[i + rank - t.Rank]
            flat <- flat * d + (if d = 1 then 0 else k)
        flat
    let count = Array.fold (*) 1 shape
    let xa, xb = a.Float32.ToArray(), b.Float32.ToArray()
    let out = Array.zeroCreate<float32> count
    let idx = Array.zeroCreate<int> rank
    for n in 0 .. count - 1 do
        let mutable rest = n
        for i in rank - 1 .. -1 .. 0 do
            idx.[i] <- rest % shape.[i]
            rest <- rest / shape.[i]
        let u, v = xa.[index a idx], xb.[index b idx]
        out.[n] <-
            match op with
            | TensorOps.Binary.Add -> u + v
            | TensorOps.Binary.Mul -> u * v
            | TensorOps.Binary.Sub -> u - v
            | _ -> u / v
    Tensor.FromFloat32(ReadOnlySpan out, shape)

/// A random pair of shapes that broadcast: a full shape, and each side keeping a suffix of it with some sizes set to 1.
let private randomPair (rng: Random) =
    let rank = rng.Next(0, 6)
    let full = Array.init rank (fun _ -> rng.Next(1, 2 + (if rng.Next 3 = 0 then 40 else 6)))
    let side () =
        let keep = rng.Next(0, rank + 1)
        full.[rank - keep ..] |> Array.map (fun d -> if rng.Next 3 = 0 then 1 else d)
    side (), side ()

let private ops = [ TensorOps.Binary.Add; TensorOps.Binary.Mul; TensorOps.Binary.Sub; TensorOps.Binary.Div ]

let private pass threads = Pass(threads, PackStore(), null)

[<Tests>]
let tests =
    testList "Engine.TensorOps" [
        test "400 random broadcasts of add, mul, sub and div equal the definition bit for bit, on one thread and two" {
            let rng = Random 20261208
            for i in 1 .. 400 do
                let sa, sb = randomPair rng
                let a, b = randomTensor rng sa, randomTensor rng sb
                let op = ops.[rng.Next ops.Length]
                let what = $"case {i}: {Tensor.ShapeString sa} {op} {Tensor.ShapeString sb}"
                let expected = definition op a b
                expectSameBits (what + ", two threads") (TensorOps.Apply(op, a, b, pass 2)) expected
                expectSameBits (what + ", one thread") (TensorOps.Apply(op, a, b, pass 1)) expected
        }
        // Shapes chosen for the paths: long rows split among threads, short rows in blocks, a number stretched along a
        // row from either side, rows whose start needs every outer index, an empty output.
        for name, sa, sb in
            [ "same shapes, longer than a work item (pieces of one row)", [| 3; 40; 200 |], [| 3; 40; 200 |]
              "squeeze-excitation [N, C, H, W] * [N, C, 1, 1] (a number per plane)", [| 2; 96; 14; 14 |], [| 2; 96; 1; 1 |]
              "a per-channel parameter [C, 1, 1] on the left", [| 64; 1; 1 |], [| 3; 64; 30; 30 |]
              "the last dimension broadcast (short rows, many of them)", [| 2; 70; 130; 3 |], [| 3 |]
              "outer and inner broadcasts mixed", [| 5; 1; 7; 1 |], [| 1; 6; 1; 9 |]
              "a plane over a batch, rows longer than a work item", [| 200; 100 |], [| 4; 200; 100 |]
              "an empty output", [| 0; 3 |], [| 1; 3 |]
              "two scalars", [||], [| 1; 1 |] ] do
            test $"{name} equals the definition bit for bit" {
                let rng = Random 7
                let a, b = randomTensor rng sa, randomTensor rng sb
                for op in ops do
                    let expected = definition op a b
                    expectSameBits $"{name}, {op}" (TensorOps.Apply(op, a, b, pass 2)) expected
                    expectSameBits $"{name}, {op} swapped" (TensorOps.Apply(op, b, a, pass 2)) (definition op b a)
            }
        test "a tensor with a number, either side first, equals the definition bit for bit (longer than a work item)" {
            let rng = Random 11
            let a = randomTensor rng [| 3; 100; 120 |]
            let number = -0.37
            let n = Tensor.FromFloat32(ReadOnlySpan [| float32 number |], [||])
            for op in ops do
                expectSameBits $"a {op} number" (TensorOps.Apply(op, a, number, pass 2)) (definition op a n)
                expectSameBits $"number {op} a" (TensorOps.Apply(op, a, number, pass 2, true)) (definition op n a)
                expectSameBits $"a {op} number, one thread" (TensorOps.Apply(op, a, number, pass 1)) (definition op a n)
        }
    ]
