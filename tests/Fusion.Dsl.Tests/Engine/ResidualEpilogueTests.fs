/// The residual add in the convolutions' epilogue (Epilogue.Residual): the GEMM paths (register-blocked AVX-512 stores,
/// tile stores, Toeplitz copy-outs, depth-chunked tiles) and Winograd's output transform store act((acc·scale + shift) + r),
/// which must be bit for bit what the unfused graph computes: the convolution stored, a separate add, then the activation.
/// The engine's list of Engine tests is re-run with AVX-512 and with AVX off (InstructionSetTests), so these cases cover
/// the 512-bit, 256-bit and scalar stores.
module Fusion.Dsl.Tests.Engine.ResidualEpilogueTests

open System
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.Engine.EngineSupport

/// A pass on `threads` cores with its own pack store and no buffer recycling.
let private passOn threads = Pass(threads, PackStore(), null)

let private shapeOf (t: Tensor) = t.Dimensions |> Seq.toArray

let private takesWinograd (conv: Conv) (shape: int[]) = Winograd.Applies(ConvGeometry.Create(conv, ReadOnlySpan shape))

/// The unfused graph: the convolution stored through scale and shift, `y + r` into a fresh tensor, then the activation.
let private unfused (conv: Conv) (x: Tensor) (scale: float32[] | null) (shift: float32[]) (act: Act) (r: Tensor) threads =
    let pass = passOn threads
    let y = ConvKernels.Forward(conv, x, Epilogue(scale, shift, Act.None), pass)
    TensorOps.Activation(TensorOps.Apply(TensorOps.Binary.Add, y, r, pass), act, pass, inPlace = true)

/// A residual of the output's shape with the values that test the order of the operations: ordinary values, the exact
/// negation of the convolution's value (the sum is +0), -0, both infinities and a NaN.
let private residualFor (y: Tensor) seed =
    let rng = Random(seed: int)
    let yv = y.ToArray()
    let r = Array.init yv.Length (fun _ -> float32 (rng.NextDouble() * 4.0 - 2.0))
    for i in 0 .. r.Length - 1 do
        match i % 23 with
        | 3 -> r.[i] <- -yv.[i]
        | 7 -> r.[i] <- -0.0f
        | 11 when i % 3 = 0 -> r.[i] <- infinityf
        | 11 when i % 3 = 1 -> r.[i] <- -infinityf
        | 11 -> r.[i] <- nanf
        | _ -> ()
    Tensor.FromFloat32(ReadOnlySpan r, shapeOf y)

/// name, convolution, input channels and spatial size, whether Winograd takes it.
let private cases =
    [ "1x1 on 8x8 (12x32 blocks stored from registers)", Conv.Create(2, 40, 36, [| 1 |], seed = 1), 40, (8, 8), false
      "1x1 on 7x7 (half and one-column panels, stored through the tile)", Conv.Create(2, 24, 30, [| 1 |], seed = 2), 24, (7, 7), false
      "1x1 of depth 300 on 5x5 (depth chunks in accumulator tiles)", Conv.Create(2, 300, 20, [| 1 |], bias = false, seed = 3), 300, (5, 5), false
      "3x3 stride 2 on 15x15 (im2col)", Conv.Create(2, 16, 30, [| 3 |], stride = [| 2 |], padding = ConvPadding.Explicit 1, seed = 4), 16, (15, 15), false
      "3x3 on 9x9 with 8 channels (Toeplitz columns dropped inside tiles)", Conv.Create(2, 8, 26, [| 3 |], padding = ConvPadding.Explicit 1, seed = 5), 8, (9, 9), false
      "3x3 stride 1 on 9x9 (Winograd, rows shorter than a block)", Conv.Create(2, 24, 20, [| 3 |], padding = ConvPadding.Explicit 1, seed = 6), 24, (9, 9), true
      "3x3 stride 1 on 14x37 (Winograd, rows of sixteen tiles and a half tile)", Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, seed = 7), 16, (14, 37), true ]

[<Tests>]
let tests =
    testList "Engine.ResidualEpilogue" [
        for name, conv, cin, (h, w), winograd in cases do
            test $"the residual in the epilogue gives the bits of conv, add, activation: {name}" {
                let rng = Random 17
                let channels = conv.OutChannels
                let scale = Array.init channels (fun _ -> float32 (rng.NextDouble() * 1.5 - 0.75))
                let shift = Array.init channels (fun _ -> float32 (rng.NextDouble() - 0.5))
                for batch in [ 1; 3 ] do
                    let shape = [| batch; cin; h; w |]
                    Expect.equal (takesWinograd conv shape) winograd "the case takes the path it is named for"
                    Expect.isTrue (ConvKernels.TakesResidual(ConvGeometry.Create(conv, ReadOnlySpan shape))) "the path takes a residual"
                    let x = randomTensor (Random batch) shape
                    for withScale in [ false; true ] do
                        let sc = if withScale then scale else null
                        let r = residualFor (ConvKernels.Forward(conv, x, Epilogue(sc, shift, Act.None), passOn 1)) (batch + 40)
                        for act in [ Act.None; Act.ReLU; Act.ReLU6 ] do
                            let expected = unfused conv x sc shift act r 1
                            for threads in [ 1; 2 ] do
                                let fused = ConvKernels.Forward(conv, x, Epilogue(sc, shift, act, r.ToArray()), passOn threads)
                                expectSameBits $"batch {batch}, scale {withScale}, {act}, {threads} thread(s)" fused expected
            }
        test "Winograd passes over a few tile rows and images sharing a pass read the residual at each output's index" {
            let conv = Conv.Create(2, 16, 24, [| 3 |], padding = ConvPadding.Explicit 1, seed = 21)
            let shape = [| 5; 16; 7; 9 |]
            let x = randomTensor (Random 22) shape
            let geo = ConvGeometry.Create(conv, ReadOnlySpan shape)
            let shift = conv.Bias.ToArray()
            let r = residualFor (ConvKernels.Forward(conv, x, Epilogue(null, shift, Act.None), passOn 1)) 23
            let expected = unfused conv x null shift Act.ReLU r 2
            // One image's transformed tiles (16 values per tile and channel, 16 in and 24 out, 4x5 tiles): one tile row
            // per pass, then passes of 1, 2 (the last one shorter) and all 5 images.
            let perImage = 16L * 40L * 4L * 5L
            for chunk in [ perImage / 4L; perImage; 2L * perImage; 5L * perImage ] do
                match Winograd.TryForward(conv, geo, x, Epilogue(null, shift, Act.ReLU, r.ToArray()), passOn 2, chunk) with
                | null -> failtest "the Winograd path declined the input"
                | y -> expectSameBits $"{chunk} transformed floats per pass" y expected
        }
        test "a residual of another length is refused before any kernel runs" {
            for conv, shape in [ Conv.Create(2, 16, 16, [| 1 |], seed = 1), [| 1; 16; 6; 6 |]
                                 Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, seed = 2), [| 1; 16; 6; 6 |] ] do
                let x = randomTensor (Random 3) shape
                let ep = Epilogue(null, null, Act.ReLU, Array.zeroCreate (16 * 36 - 1))
                Expect.throwsT<ArgumentException> (fun () -> ConvKernels.Forward(conv, x, ep, passOn 2) |> ignore) $"{conv}"
            let conv = Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, seed = 2)
            let geo = ConvGeometry.Create(conv, ReadOnlySpan [| 1; 16; 6; 6 |])
            Expect.throwsT<ArgumentException>
                (fun () -> Winograd.TryForward(conv, geo, randomTensor (Random 3) [| 1; 16; 6; 6 |], Epilogue(null, null, Act.None, Array.zeroCreate 5), passOn 1) |> ignore)
                "Winograd checks the length too"
        }
        test "depthwise and transposed convolutions take no residual in their epilogue" {
            for conv, shape in [ Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, groups = 16, seed = 1), [| 1; 16; 6; 6 |]
                                 Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, transposed = true, seed = 2), [| 1; 16; 6; 6 |] ] do
                Expect.isFalse (ConvKernels.TakesResidual(ConvGeometry.Create(conv, ReadOnlySpan shape))) $"{conv}"
                let ep = Epilogue(null, null, Act.None, Array.zeroCreate (16 * 36))
                Expect.throwsT<ArgumentException> (fun () -> ConvKernels.Forward(conv, randomTensor (Random 3) shape, ep, passOn 1) |> ignore) $"{conv}"
        }
        // The evaluator's choice: the epilogue (Winograd, 1x1 GEMM) or the separate add (depthwise; a residual broadcast
        // over the channels), each giving the unfused graph's bits.
        for name, conv, residualShape in
            [ "Winograd", Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, seed = 31), [| 2; 16; 6; 6 |]
              "1x1 GEMM", Conv.Create(2, 16, 16, [| 1 |], seed = 32), [| 2; 16; 6; 6 |]
              "depthwise (separate add)", Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, groups = 16, seed = 33), [| 2; 16; 6; 6 |]
              "residual broadcast over the channels (separate add)", Conv.Create(2, 16, 16, [| 1 |], seed = 34), [| 2; 1; 6; 6 |] ] do
            test $"relu(conv(x) + r) fused by the graph rules keeps every bit: {name}" {
                let g = GraphBuilder()
                let x = g.Input()
                let r = g.Call("shortcut", x)
                let y = g.Function("relu", g.AddValues(g.Call("conv", x), r))
                // The shortcut makes r of residualShape: x itself for the full shape, a 1x1 convolution to one channel for
                // the broadcast.
                let shortcut : Module =
                    if residualShape.[1] = 16 then Identity.Create() :> Module
                    else Conv.Create(2, 16, 1, [| 1 |], seed = 35) :> Module
                let model =
                    UserModule.Create("Block", ModuleChildren.Create([ NamedModule("conv", conv); NamedModule("shortcut", shortcut) ]), g.Output y) :> Module
                let fused = Fuser.FuseGraphs(model, RuleSet.Extended)
                Expect.isFalse (obj.ReferenceEquals(fused, model)) "the rules rewrote the join"
                let input = randomTensor (Random 36) [| 2; 16; 6; 6 |]
                for options in [ oneThread; twoThreads ] do
                    expectSameBits name (Forward.Run(fused, input, options)) (Forward.Run(model, input, options))
            }
    ]
