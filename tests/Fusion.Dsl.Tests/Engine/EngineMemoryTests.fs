/// What EngineMemory counts: the packed forms of a model's weights appear with the first pass that needs them, at the size
/// of their layout (panels of Gemm.MR rows, zero-padded; Winograd's 16 transformed matrices), and the pool stays in its bound.
module Fusion.Dsl.Tests.Engine.EngineMemoryTests

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Layers
open Fusion.Dsl.Tests.Engine.EngineSupport

/// Bytes of a weight of m rows and depth k packed in panels of Gemm.MR rows (the last one zero-padded), as float32.
let private panelBytes (m: int) (k: int) = int64 ((m + Gemm.MR - 1) / Gemm.MR * Gemm.MR * k * sizeof<float32>)

[<Tests>]
let tests =
    testList "Engine.EngineMemory" [
        test "a 1x1 convolution's packs appear with its first pass, one panel layout of its 10 rows and 16 inputs" {
            let conv = Conv.Create(2, 16, 10, [| 1 |], bias = false, seed = 1)
            Expect.equal (EngineMemory.PackedWeightBytes conv) 0L "nothing packed before a pass"
            Forward.Run(conv, randomTensor (Random 2) [| 1; 16; 5; 5 |], twoThreads) |> ignore
            Expect.equal (EngineMemory.PackedWeightBytes conv) (panelBytes 10 16) "two panels of six rows, 16 deep"
        }
        test "a 3x3 convolution on the Winograd path holds its 16 transformed matrices" {
            let conv = Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, bias = false, seed = 3)
            Forward.Run(conv, randomTensor (Random 4) [| 1; 16; 8; 8 |], twoThreads) |> ignore
            Expect.equal (EngineMemory.PackedWeightBytes conv) (16L * panelBytes 16 16) "one 16x16 matrix per position of a 4x4 tile"
        }
        test "the pooled intermediates stay within the pool's 256 MiB bound" {
            Forward.Run(Conv.Create(2, 16, 16, [| 1 |], seed = 5), randomTensor (Random 6) [| 2; 16; 64; 64 |], twoThreads) |> ignore
            let pooled = EngineMemory.PooledBufferBytes
            Expect.isTrue (pooled >= 0L && pooled <= 256L * 1024L * 1024L) $"0 to 256 MiB, got {pooled}"
        }
    ]
