/// The core's one statement of output lengths (SlidingWindow) and broadcasting (Broadcast), which the engine, the ONNX
/// exporter and the generators use: checked here against sizes PyTorch gives for the same arguments.
module Fusion.Dsl.Tests.Layers.SlidingWindowTests

open System
open Expecto
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

[<Tests>]
let tests =
    testList "Layers.SlidingWindow" [
        test "convolution lengths are PyTorch's, including dilation and a too-small input" {
            Expect.equal (SlidingWindow.ConvOutput(224L, 7L, 2L, 3L, 3L, 1L)) 112L "resnet's stem"
            Expect.equal (SlidingWindow.ConvOutput(224L, 3L, 2L, 1L, 1L, 1L)) 112L "a strided 3x3"
            Expect.equal (SlidingWindow.ConvOutput(10L, 3L, 1L, 0L, 0L, 2L)) 6L "dilation 2"
            Expect.equal (SlidingWindow.ConvOutput(7L, 4L, 1L, 1L, 2L, 1L)) 7L "uneven 'same' padding"
            // Floor division: truncation would make this 0, a size the callers could mistake for an empty output.
            Expect.equal (SlidingWindow.ConvOutput(2L, 5L, 2L, 0L, 0L, 1L)) -1L "a kernel longer than the input"
        }
        test "transposed convolution lengths are PyTorch's" {
            Expect.equal (SlidingWindow.ConvTransposeOutput(7L, 3L, 2L, 1L, 1L, 1L, 1L)) 14L "a 2x upsampling"
            Expect.equal (SlidingWindow.ConvTransposeOutput(5L, 4L, 1L, 0L, 0L, 2L, 0L)) 11L "dilation 2"
        }
        test "pooling lengths follow ceil_mode and its last-window rule" {
            Expect.equal (SlidingWindow.PoolOutput(112L, 3L, 2L, 1L, 1L, false)) 56L "resnet's max pool"
            Expect.equal (SlidingWindow.PoolOutput(112L, 3L, 2L, 0L, 1L, false)) 55L "floor"
            Expect.equal (SlidingWindow.PoolOutput(112L, 3L, 2L, 0L, 1L, true)) 56L "ceil_mode rounds up (googlenet)"
            Expect.equal (SlidingWindow.PoolOutput(3L, 2L, 2L, 1L, 1L, true)) 2L "no window starting in the right padding"
            Expect.equal (SlidingWindow.PoolOutput(2L, 3L, 1L, 0L, 1L, false)) 0L "a window longer than the input"
        }
        let broadcast (a: int array) (b: int array) = Broadcast.Shape(ReadOnlySpan a, ReadOnlySpan b)
        test "broadcast shapes align at the last dimension and refuse sizes that are neither equal nor 1" {
            Expect.equal (broadcast [| 2; 1; 3 |] [| 4; 1 |]) [| 2; 4; 3 |] "ranks differ"
            Expect.equal (broadcast [||] [| 2; 3 |]) [| 2; 3 |] "a scalar"
            Expect.equal (broadcast [| 0 |] [| 1 |]) [| 0 |] "an empty dimension against 1"
            Expect.isNull (broadcast [| 3 |] [| 2 |]) "3 against 2"
            Expect.isNull (broadcast [| 0 |] [| 2 |]) "0 against 2"
        }
    ]
