/// The int8 convolution and linear layer against their definitions summed in int64: out[b, o, y, x] =
/// Σ_{c, i, j} w[o, c, i, j]·(in[b, g·C_in/g + c, y·s − p + i·d, x·s − p + j·d] − z), a tap outside the input counting
/// as the zero point (so it adds nothing). Every path (AVX-512BW, AVX2, scalar: Engine.InstructionSet reruns these at
/// each level) must give these exact sums for any geometry, including the 1×1 form that reads the input in place.
module Fusion.Dsl.Tests.Engine.Int8ConvolutionTests

open System
open Expecto
open Fusion.Dsl.Engine

type private Geometry =
    { Batch: int; Groups: int; InPerGroup: int; OutChannels: int; Height: int; Width: int
      Kernel: int * int; Stride: int * int; Padding: int * int; Dilation: int * int }

let private outputSize (g: Geometry) =
    let axis size k s p d = (size + 2 * p - d * (k - 1) - 1) / s + 1
    axis g.Height (fst g.Kernel) (fst g.Stride) (fst g.Padding) (fst g.Dilation),
    axis g.Width (snd g.Kernel) (snd g.Stride) (snd g.Padding) (snd g.Dilation)

/// The convolution by its definition, in int64.
let private definition (g: Geometry) (w: sbyte[]) (x: byte[]) (zero: int) =
    let oh, ow = outputSize g
    let kh, kw = g.Kernel
    let cin = g.Groups * g.InPerGroup
    let perGroup = g.OutChannels / g.Groups
    Array.init (g.Batch * g.OutChannels * oh * ow) (fun index ->
        let xo = index % ow
        let yo = index / ow % oh
        let o = index / (ow * oh) % g.OutChannels
        let b = index / (ow * oh * g.OutChannels)
        let group = o / perGroup
        let mutable sum = 0L
        for c in 0 .. g.InPerGroup - 1 do
            for i in 0 .. kh - 1 do
                for j in 0 .. kw - 1 do
                    let iy = yo * fst g.Stride - fst g.Padding + i * fst g.Dilation
                    let ix = xo * snd g.Stride - snd g.Padding + j * snd g.Dilation
                    if iy >= 0 && iy < g.Height && ix >= 0 && ix < g.Width then
                        let v = int x.[((b * cin + group * g.InPerGroup + c) * g.Height + iy) * g.Width + ix]
                        sum <- sum + int64 w.[((o * g.InPerGroup + c) * kh + i) * kw + j] * int64 (v - zero)
        sum)

let private convolution (g: Geometry) (w: sbyte[]) =
    let pair (a, b) = struct (a, b)
    Int8Convolution(ReadOnlySpan w, g.OutChannels, g.InPerGroup, pair g.Kernel, pair g.Stride, pair g.Padding, pair g.Dilation, g.Groups)

let private expectExact what (actual: int[]) (expected: int64[]) =
    Expect.equal actual.Length expected.Length $"{what}: size"
    for i in 0 .. actual.Length - 1 do
        if int64 actual.[i] <> expected.[i] then failtestf "%s: element %d is %d, the definition gives %d" what i actual.[i] expected.[i]

let private geometries =
    let plain = { Batch = 1; Groups = 1; InPerGroup = 3; OutChannels = 5; Height = 7; Width = 9
                  Kernel = (3, 3); Stride = (1, 1); Padding = (1, 1); Dilation = (1, 1) }
    [ "3x3, padding 1", plain
      "1x1 in place, batch 2", { plain with Batch = 2; InPerGroup = 13; OutChannels = 6; Kernel = (1, 1); Padding = (0, 0) }
      "1x1 with stride 2", { plain with Kernel = (1, 1); Stride = (2, 2); Padding = (0, 0) }
      "7x7 stride 2 padding 3 (a stem)", { plain with Batch = 2; Height = 17; Width = 15; Kernel = (7, 7); Stride = (2, 2); Padding = (3, 3) }
      "uneven kernel, stride, padding and dilation", { plain with Kernel = (2, 3); Stride = (2, 1); Padding = (0, 2); Dilation = (2, 3) }
      "groups 3", { plain with Groups = 3; InPerGroup = 2; OutChannels = 6 }
      "stride 1, as wide as the input, dilated (2, 3) (shifted-plane taps)", { plain with Height = 8; Width = 10; Padding = (2, 3); Dilation = (2, 3) }
      "stride 1, a tap wholly beside a 3-wide input (dilation 3, padding 3)", { plain with Height = 4; Width = 3; Padding = (3, 3); Dilation = (3, 3) }
      "stride 1, taller output than input (padding 2 on a 3x3)", { plain with Padding = (2, 1) }
      "depthwise 3x3 stride 2", { plain with Batch = 2; Groups = 8; InPerGroup = 1; OutChannels = 8; Stride = (2, 2) }
      "depthwise with multiplier 2", { plain with Groups = 4; InPerGroup = 1; OutChannels = 8 }
      "depthwise 5x4, stride (2, 3), padding (2, 1), dilation (1, 2)",
      { plain with Batch = 2; Groups = 3; InPerGroup = 1; OutChannels = 3; Height = 13; Width = 17; Kernel = (5, 4); Stride = (2, 3); Padding = (2, 1); Dilation = (1, 2) }
      "depthwise wider than a vector row (stride 1, 40 columns)", { plain with Groups = 2; InPerGroup = 1; OutChannels = 2; Height = 5; Width = 40 }
      "kernel as large as the padded input", { plain with Height = 2; Width = 3; Kernel = (4, 5); Padding = (1, 1) }
      "deep 3x3 (depth over a tile)", { plain with InPerGroup = 70; OutChannels = 9; Height = 5; Width = 6 } ]

let private random (rng: Random) (g: Geometry) top =
    let w = Array.init (g.OutChannels * g.InPerGroup * fst g.Kernel * snd g.Kernel) (fun _ -> sbyte (rng.Next(-128, 128)))
    let x = Array.init (g.Batch * g.Groups * g.InPerGroup * g.Height * g.Width) (fun _ -> byte (rng.Next(0, top + 1)))
    w, x

[<Tests>]
let tests =
    testList "Engine.Int8Convolution" [
        test "every geometry gives the definition's sums, for 7-bit and full-range activations and any zero point" {
            let rng = Random 20261207
            for name, g in geometries do
                for top, zero in [ 127, 0; 127, 64; 255, 128; 255, 255 ] do
                    let w, x = random rng g top
                    let actual = (convolution g w).Accumulate(x, g.Batch, g.Height, g.Width, zero, 1)
                    expectExact $"{name}, activations 0..{top}, zero point {zero}" actual (definition g w x zero)
        }
        test "a depthwise kernel with the most taps float32 sums exactly (22x23), and one past it (23x23), give the definition's sums at the extremes" {
            for kh, kw in [ 22, 23; 23, 23 ] do
                let g = { Batch = 1; Groups = 2; InPerGroup = 1; OutChannels = 2; Height = kh + 1; Width = kw
                          Kernel = (kh, kw); Stride = (1, 1); Padding = (0, 0); Dilation = (1, 1) }
                let w = Array.create (2 * kh * kw) -128y
                let x = Array.create (2 * (kh + 1) * kw) 255uy
                let actual = (convolution g w).Accumulate(x, 1, kh + 1, kw, 0, 1)
                expectExact $"{kh}x{kw} taps of 255·(−128)" actual (definition g w x 0)
                Expect.equal actual.[0] (-128 * 255 * kh * kw) "the closed form"
        }
        test "the output size is PyTorch's floor((size + 2p − d(k − 1) − 1)/s) + 1" {
            for name, g in geometries do
                let w, _ = random (Random 1) g 255
                let struct (h, w) = (convolution g w).OutputSize(g.Height, g.Width)
                Expect.equal (h, w) (outputSize g) name
        }
        test "two threads give the bits of one" {
            let g = { Batch = 2; Groups = 1; InPerGroup = 16; OutChannels = 24; Height = 30; Width = 30
                      Kernel = (3, 3); Stride = (1, 1); Padding = (1, 1); Dilation = (1, 1) }
            let w, x = random (Random 5) g 255
            let conv = convolution g w
            Expect.sequenceEqual (conv.Accumulate(x, 2, 30, 30, 7, 2)) (conv.Accumulate(x, 2, 30, 30, 7, 1)) "same sums"
        }
        test "wrong weights, geometry, input length, size or zero point are refused by name" {
            let ok = Array.zeroCreate<sbyte> (4 * 2 * 3 * 3)
            let make (w: sbyte[]) cout cin groups pad = Int8Convolution(ReadOnlySpan w, cout, cin, struct (3, 3), struct (1, 1), struct (pad, pad), struct (1, 1), groups) |> ignore
            Expect.throwsT<ArgumentException> (fun () -> make ok.[1..] 4 2 1 0) "one weight short"
            Expect.throwsT<ArgumentException> (fun () -> make ok 4 2 3 0) "groups that do not divide C_out"
            Expect.throwsT<ArgumentException> (fun () -> make ok 4 2 1 -1) "negative padding"
            let conv = Int8Convolution(ReadOnlySpan ok, 4, 2, struct (3, 3), struct (1, 1), struct (0, 0), struct (1, 1), 1)
            Expect.throwsT<ArgumentException> (fun () -> conv.Accumulate(Array.zeroCreate 49, 1, 5, 5, 0) |> ignore) "49 bytes for 2x5x5"
            Expect.throwsT<ArgumentException> (fun () -> conv.Accumulate(Array.zeroCreate 8, 1, 2, 2, 0) |> ignore) "2x2 under a 3x3 kernel"
            Expect.throwsT<ArgumentException> (fun () -> conv.Accumulate(Array.zeroCreate 50, 1, 5, 5, 256) |> ignore) "zero point 256"
        }
    ]

[<Tests>]
let linearTests =
    testList "Engine.Int8Linear" [
        test "rows of activations give the definition's sums Σ_k w[o, k]·(x[r, k] − z)" {
            let rng = Random 11
            for rows, inF, outF in [ 1, 1, 1; 1, 37, 5; 3, 64, 10; 17, 100, 33 ] do
                for top, zero in [ 127, 3; 255, 200 ] do
                    let w = Array.init (outF * inF) (fun _ -> sbyte (rng.Next(-128, 128)))
                    let x = Array.init (rows * inF) (fun _ -> byte (rng.Next(0, top + 1)))
                    let expected =
                        Array.init (rows * outF) (fun i ->
                            let r, o = i / outF, i % outF
                            Seq.sum (seq { for k in 0 .. inF - 1 -> int64 w.[o * inF + k] * int64 (int x.[r * inF + k] - zero) }))
                    let actual = Int8Linear(ReadOnlySpan w, outF, inF).Accumulate(x, zero, 1)
                    expectExact $"{rows}x{inF} -> {outF}, activations 0..{top}, zero point {zero}" actual expected
        }
        test "an input that is not whole rows, or empty, is refused" {
            let linear = Int8Linear(ReadOnlySpan(Array.zeroCreate<sbyte> 6), 2, 3)
            Expect.throwsT<ArgumentException> (fun () -> linear.Accumulate(Array.zeroCreate 4, 0) |> ignore) "4 bytes of rows of 3"
            Expect.throwsT<ArgumentException> (fun () -> linear.Accumulate(Array.zeroCreate 0, 0) |> ignore) "no rows"
        }
    ]
