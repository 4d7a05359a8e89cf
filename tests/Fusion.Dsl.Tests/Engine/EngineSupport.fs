/// Helpers shared by the engine tests: seeded random tensors and the PyTorch-style closeness check.
module Fusion.Dsl.Tests.Engine.EngineSupport

open System
open Expecto
open Fusion.Dsl.Engine
open Fusion.Dsl.Tensors

/// A tensor of uniform values in [-1, 1) from a seeded generator.
let randomTensor (rng: Random) (shape: int[]) =
    Tensor.Generate((fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0)), shape)

/// A float32 tensor from literal values.
let tensorOf (data: float32[]) (shape: int[]) = Tensor.FromFloat32(ReadOnlySpan data, shape)

/// `make ()` when `cond` holds, else null (for optional constructor tensors).
let orNull (cond: bool) (make: unit -> Tensor) : Tensor | null = if cond then make () else null

/// Options for a single-threaded pass (the parallel and serial results must be the same bits).
let oneThread = ForwardOptions(Threads = Nullable 1)
let twoThreads = ForwardOptions(Threads = Nullable 2)

/// A pass on two cores for tests that call a kernel directly: its own pack store, no buffer recycling.
let kernelPass () = Pass(2, PackStore(), null)

/// `max|a-b| <= atol + rtol * max|b|` with the same shape, reporting both sides when it fails.
let expectClose (what: string) (rtol: float) (atol: float) (actual: Tensor) (expected: Tensor) =
    Expect.sequenceEqual actual.Dimensions expected.Dimensions $"{what}: shape"
    let diff = actual.MaxAbsDiff expected
    let bound = atol + rtol * expected.MaxAbs()
    Expect.isTrue (diff <= bound) $"{what}: max|a-b| = {diff} exceeds atol + rtol*max|b| = {bound}"

/// Bit-identical tensors (same shape, same bits).
let expectSameBits (what: string) (actual: Tensor) (expected: Tensor) =
    Expect.sequenceEqual actual.Dimensions expected.Dimensions $"{what}: shape"
    Expect.isTrue (actual.Equals expected) $"{what}: not bit-identical (max|a-b| = {actual.MaxAbsDiff expected})"

/// An eval BatchNorm2d whose affine parameters and running statistics are drawn from `seed` (gamma of either sign,
/// variances from 0.5 to 2), so that folding it changes every channel.
let randomBatchNorm2d (seed: int) (channels: int) =
    let rng = Random(seed)
    let vec lo hi = Tensor.Generate((fun _ -> float32 (lo + (hi - lo) * rng.NextDouble())), [| channels |])
    Fusion.Dsl.Layers.BatchNorm.Create(2, channels, weight = vec -1.5 1.5, bias = vec -0.5 0.5, runningMean = vec -0.3 0.3, runningVar = vec 0.5 2.0)
