/// Independent float64 references for BatchNorm folding: the formula written directly over multi-indices, and tiny naive
/// forwards (Conv2d, ConvTranspose2d, Linear, eval BatchNorm) to check the law conv(x) |> bn = folded(x).
module Fusion.Dsl.Tests.Folding.Reference

open System
open Expecto
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

let private f64 (t: Tensor | null) =
    match t with
    | null -> failtest "a tensor the reference needs is missing (running statistics?)"
    | t -> Array.init t.Count (fun i -> t.[i])

/// gamma / sqrt(var + eps) per channel in float64 (gamma = 1 when not affine).
let bnScale (bn: BatchNorm) =
    let var = f64 bn.RunningVar
    let gamma = match bn.Weight with | null -> Array.create bn.NumFeatures 1.0 | w -> f64 w
    Array.init bn.NumFeatures (fun c -> gamma.[c] / sqrt (var.[c] + bn.Eps))

/// beta per channel (0 when not affine).
let bnShift (bn: BatchNorm) = match bn.Bias with | null -> Array.zeroCreate bn.NumFeatures | b -> f64 b

/// The output channel of a flat weight index, decoded from the weight's shape:
/// [out, in/g, *k] for a convolution, [in, out/g, *k] for a transposed one (channel = group · out/g + j).
let outChannelOf (conv: Conv) (flat: int) =
    let dims = conv.Weight.Dimensions |> Seq.toArray
    let kernel = dims.[2..] |> Array.fold (*) 1
    let d0 = flat / (dims.[1] * kernel)
    if not conv.Transposed then d0
    else
        let j = (flat / kernel) % dims.[1]
        let group = d0 / (conv.InChannels / conv.Groups)
        group * dims.[1] + j

/// Folded weight and bias of a convolution (either kind) by the formula, in float64.
let foldConv (conv: Conv) (bn: BatchNorm) =
    let s = bnScale bn
    let w = f64 conv.Weight
    let weight = Array.init w.Length (fun i -> w.[i] * s.[outChannelOf conv i])
    let b = match conv.Bias with | null -> Array.zeroCreate conv.OutChannels | b -> f64 b
    let mean = f64 bn.RunningMean
    let beta = bnShift bn
    weight, Array.init conv.OutChannels (fun c -> (b.[c] - mean.[c]) * s.[c] + beta.[c])

/// Folded weight and bias of a Linear layer by the formula (a one-feature BatchNorm broadcasts), in float64.
let foldLinear (linear: Linear) (bn: BatchNorm) =
    let s = bnScale bn
    let ch o = if bn.NumFeatures = 1 then 0 else o
    let w = f64 linear.Weight
    let weight = Array.init w.Length (fun i -> w.[i] * s.[ch (i / linear.InFeatures)])
    let b = match linear.Bias with | null -> Array.zeroCreate linear.OutFeatures | b -> f64 b
    let mean = f64 bn.RunningMean
    let beta = bnShift bn
    weight, Array.init linear.OutFeatures (fun o -> (b.[o] - mean.[ch o]) * s.[ch o] + beta.[ch o])

/// Largest |actual - expected| / (|expected| + floor) over the elements: one float32 rounding of a float64 value is
/// at most 2^-24 relative.
let maxRelError (actual: Tensor) (expected: float[]) (floor: float) =
    if actual.Count <> expected.Length then infinity
    else Seq.init expected.Length (fun i -> abs (actual.[i] - expected.[i]) / (abs expected.[i] + floor)) |> Seq.fold max 0.0

/// A single-image 2-D input [c, h, w] in float64.
type Image = { C: int; H: int; W: int; Data: float[] }

let randomImage (rng: Random) c h w = { C = c; H = h; W = w; Data = Array.init (c * h * w) (fun _ -> rng.NextDouble() * 2.0 - 1.0) }

/// Naive grouped, strided, dilated, zero-padded Conv2d in float64.
let conv2d (conv: Conv) (weight: float[]) (bias: float[]) (x: Image) =
    let k = conv.KernelSize
    let s, p, d = conv.Stride, conv.Padding.Amounts, conv.Dilation
    let ho = (x.H + 2 * p.[0] - d.[0] * (k.[0] - 1) - 1) / s.[0] + 1
    let wo = (x.W + 2 * p.[1] - d.[1] * (k.[1] - 1) - 1) / s.[1] + 1
    let inPerGroup = conv.InChannels / conv.Groups
    let outPerGroup = conv.OutChannels / conv.Groups
    let y = Array.zeroCreate (conv.OutChannels * ho * wo)
    for o in 0 .. conv.OutChannels - 1 do
        let g = o / outPerGroup
        for oy in 0 .. ho - 1 do
            for ox in 0 .. wo - 1 do
                let mutable acc = bias.[o]
                for ci in 0 .. inPerGroup - 1 do
                    for ky in 0 .. k.[0] - 1 do
                        for kx in 0 .. k.[1] - 1 do
                            let iy = oy * s.[0] - p.[0] + ky * d.[0]
                            let ix = ox * s.[1] - p.[1] + kx * d.[1]
                            if iy >= 0 && iy < x.H && ix >= 0 && ix < x.W then
                                let wi = ((o * inPerGroup + ci) * k.[0] + ky) * k.[1] + kx
                                acc <- acc + weight.[wi] * x.Data.[((g * inPerGroup + ci) * x.H + iy) * x.W + ix]
                y.[(o * ho + oy) * wo + ox] <- acc
    { C = conv.OutChannels; H = ho; W = wo; Data = y }

/// Naive grouped, strided, dilated ConvTranspose2d in float64 (scatter form: each input pixel adds its kernel to the output).
let convTranspose2d (conv: Conv) (weight: float[]) (bias: float[]) (x: Image) =
    let k = conv.KernelSize
    let s, p, d, op = conv.Stride, conv.Padding.Amounts, conv.Dilation, conv.OutputPadding
    let ho = (x.H - 1) * s.[0] - 2 * p.[0] + d.[0] * (k.[0] - 1) + op.[0] + 1
    let wo = (x.W - 1) * s.[1] - 2 * p.[1] + d.[1] * (k.[1] - 1) + op.[1] + 1
    let inPerGroup = conv.InChannels / conv.Groups
    let outPerGroup = conv.OutChannels / conv.Groups
    let y = Array.init (conv.OutChannels * ho * wo) (fun i -> bias.[i / (ho * wo)])
    for i in 0 .. conv.InChannels - 1 do
        let g = i / inPerGroup
        for j in 0 .. outPerGroup - 1 do
            let o = g * outPerGroup + j
            for iy in 0 .. x.H - 1 do
                for ix in 0 .. x.W - 1 do
                    for ky in 0 .. k.[0] - 1 do
                        for kx in 0 .. k.[1] - 1 do
                            let oy = iy * s.[0] - p.[0] + ky * d.[0]
                            let ox = ix * s.[1] - p.[1] + kx * d.[1]
                            if oy >= 0 && oy < ho && ox >= 0 && ox < wo then
                                let wi = ((i * outPerGroup + j) * k.[0] + ky) * k.[1] + kx
                                y.[(o * ho + oy) * wo + ox] <- y.[(o * ho + oy) * wo + ox] + weight.[wi] * x.Data.[(i * x.H + iy) * x.W + ix]
    { C = conv.OutChannels; H = ho; W = wo; Data = y }

/// Eval BatchNorm over the channels of an image, in float64: (y - mean) / sqrt(var + eps) · gamma + beta.
let batchNorm (bn: BatchNorm) (y: Image) =
    let mean, var, gamma, beta =
        f64 bn.RunningMean, f64 bn.RunningVar,
        (match bn.Weight with | null -> Array.create bn.NumFeatures 1.0 | w -> f64 w), bnShift bn
    let plane = y.H * y.W
    { y with Data = y.Data |> Array.mapi (fun i v -> let c = i / plane in (v - mean.[c]) / sqrt (var.[c] + bn.Eps) * gamma.[c] + beta.[c]) }

/// The parameters of a layer as float64 arrays (bias 0 when absent).
let convParams (conv: Conv) =
    f64 conv.Weight, (match conv.Bias with | null -> Array.zeroCreate conv.OutChannels | b -> f64 b)

/// Largest absolute difference relative to the largest magnitude of the expected values.
let relDiff (actual: float[]) (expected: float[]) =
    let scale = expected |> Array.fold (fun m v -> max m (abs v)) 0.0
    let diff = Array.fold2 (fun m a e -> max m (abs (a - e))) 0.0 actual expected
    diff / max scale 1e-30
