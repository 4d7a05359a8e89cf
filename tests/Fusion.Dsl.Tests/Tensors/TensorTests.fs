module Fusion.Dsl.Tests.Tensors.TensorTests

open System
open System.Threading
open System.Threading.Tasks
open Expecto
open Fusion.Dsl.Folding
open Fusion.Dsl.Tensors

/// A pending fold of [2, 3] (rows scaled by 2 and -0.5) that counts how often its elements are computed.
let private countedFold () =
    let source = Tensor.FromFloat32(ReadOnlySpan [| 1f; 2f; 3f; 4f; 5f; 6f |], 2, 3)
    let computed = ref 0
    let scale = [| 2.0; -0.5 |]
    let t =
        PendingFold.Create(source, scale, Func<float32[]>(fun () ->
            Interlocked.Increment(&computed.contents) |> ignore
            Array.init 6 (fun i -> float32 (float (source.Float32.[i]) * scale.[i / 3]))))
    t, source, computed

[<Tests>]
let tests =
    testList "Tensors.Tensor" [
        test "ByteCount is the element count times the dtype's size, as safetensors stores the data" {
            Expect.equal (Tensor.Zeros(2, 3).ByteCount) 24L "six float32 values"
            Expect.equal (Tensor.ScalarInt64(7L).ByteCount) 8L "one int64 value"
            Expect.equal (Tensor.FromInt64([| 1L; 2L; 3L |], 3).ByteCount) 24L "three int64 values"
            Expect.equal (Tensor.ElementSize DType.Float32, Tensor.ElementSize DType.Int64) (4, 8) "element sizes"
        }
        test "a pending fold has its shape, count and size before any element is computed" {
            let t, source, computed = countedFold ()
            Expect.equal (t.Dimensions |> Seq.toList, t.Count, t.ByteCount, t.DType) ([ 2; 3 ], 6, 24L, DType.Float32) "metadata"
            Expect.isFalse t.IsMaterialized "not computed"
            Expect.equal computed.Value 0 "compute not called"
            Expect.isTrue (obj.ReferenceEquals((nonNull t.Pending :?> PendingFold).Source, source.RawFloat32)) "the recipe holds the source itself, not a copy"
        }
        test "a pending fold computes its elements once, on first read, and then releases its recipe" {
            let t, _, computed = countedFold ()
            Expect.sequenceEqual (t.ToArray()) [| 2f; 4f; 6f; -2f; -2.5f; -3f |] "rows scaled"
            Expect.sequenceEqual (t.ToArray()) [| 2f; 4f; 6f; -2f; -2.5f; -3f |] "same values on a second read"
            Expect.equal computed.Value 1 "computed once"
            Expect.isTrue t.IsMaterialized "computed"
            Expect.isNull t.Pending "the recipe (and through it the source weight) is released"
        }
        test "concurrent first reads of a pending fold compute it once and all see the same elements" {
            let t, _, computed = countedFold ()
            let start = new ManualResetEventSlim(false)
            let reads = Array.init 8 (fun _ -> Task.Run(fun () -> start.Wait(); t.ToArray()))
            start.Set()
            let results = Task.WhenAll(reads).Result
            Expect.equal computed.Value 1 "computed once"
            for r in results do Expect.sequenceEqual r [| 2f; 4f; 6f; -2f; -2.5f; -3f |] "every reader sees the computed elements"
        }
        test "equality, hashing and reshaping of a pending fold read its values" {
            let t, _, _ = countedFold ()
            let u, _, _ = countedFold ()
            let eager = Tensor.FromFloat32(ReadOnlySpan [| 2f; 4f; 6f; -2f; -2.5f; -3f |], 2, 3)
            Expect.equal (t.GetHashCode()) (eager.GetHashCode()) "hash by value"
            Expect.isTrue (t.Equals eager && u.Equals eager) "equal by value"
            let v, _, _ = countedFold ()
            Expect.sequenceEqual (v.Reshape(3, 2).ToArray()) (eager.ToArray()) "a reshape holds the computed elements"
        }
    ]
