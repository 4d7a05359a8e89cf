module Fusion.Dsl.Tests.Tensors.TensorTests

open Expecto
open Fusion.Dsl.Tensors

[<Tests>]
let tests =
    testList "Tensors.Tensor" [
        test "ByteCount is the element count times the dtype's size, as safetensors stores the data" {
            Expect.equal (Tensor.Zeros(2, 3).ByteCount) 24L "six float32 values"
            Expect.equal (Tensor.ScalarInt64(7L).ByteCount) 8L "one int64 value"
            Expect.equal (Tensor.FromInt64([| 1L; 2L; 3L |], 3).ByteCount) 24L "three int64 values"
            Expect.equal (Tensor.ElementSize DType.Float32, Tensor.ElementSize DType.Int64) (4, 8) "element sizes"
        }
    ]
