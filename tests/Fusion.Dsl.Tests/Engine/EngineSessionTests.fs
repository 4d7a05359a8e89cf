/// EngineSession: the same bits as Forward.Run, alone or beside other sessions on other threads; disposing releases
/// the packed weights and the pooled buffers (200 models loaded, run and disposed leave the managed heap where it was);
/// the pool keeps to its limit, measured through the session's own accounting.
module Fusion.Dsl.Tests.Engine.EngineSessionTests

open System
open System.IO
open System.Threading
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.FSharp
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

/// How far the managed heap may end from where it started once everything a test made is released: room for the runtime's
/// own bookkeeping between two full collections, and 1/20 or less of what the tests would leave behind if a session
/// kept its packs or buffers (each test checks that it would leave at least 20 times this).
let private releaseTolerance = 1L <<< 20

/// The live managed heap after full blocking collections with finalizers run in between.
let private settledManagedBytes () =
    GC.Collect()
    GC.WaitForPendingFinalizers()
    GC.Collect()
    GC.GetTotalMemory(true)

let private options threads = EngineSessionOptions(Threads = Nullable threads)

/// A model that uses every kind of pack: a 3x3 convolution on the Winograd path, a 1x1 one on the GEMM path and a Linear
/// with enough rows (4 images) for the GEMM.
let private smallModel (seed: int) =
    Nn.Sequential [ "conv1", Nn.Conv2d(16, 16, 3, padding = 1, seed = seed)
                    "relu1", Nn.ReLU()
                    "conv2", Nn.Conv2d(16, 32, 1, seed = seed + 1)
                    "pool", Nn.AdaptiveAvgPool2d(1)
                    "flatten", Nn.Flatten()
                    "fc", Nn.Linear(32, 10, seed = seed + 2) ]

/// resnet18 and mobilenet_v2 as torchvision builds them, fused with their own groups (graphs, residual adds, depthwise
/// and Winograd convolutions, fused epilogues), with a 48x48 batch of two.
let private zooModels =
    lazy
        [ for name in [ "resnet18"; "mobilenet_v2" ] do
            let z = Fusion.Dsl.Zoo.ModelZoo.Create(name, seed = 3, randomizeBatchNorm = true)
            name, z.Model
            name + " fused", Fuser.FuseModules(z.Model, z.FuseGroups |> Seq.map (fun g -> g :> seq<string>)) ]

let private zooInputs = [ randomTensor (Random 1) [| 2; 3; 48; 48 |]; randomTensor (Random 2) [| 2; 3; 48; 48 |] ]

/// Runs every `work` on its own thread, all released at once, and returns their results in order.
let private concurrently (work: (unit -> 'T) list) : 'T list =
    use start = new Barrier(work.Length)
    let results = Array.zeroCreate work.Length
    let errors = Collections.Concurrent.ConcurrentQueue<exn>()
    let threads =
        work |> List.mapi (fun i w ->
            Thread(fun () ->
                try
                    start.SignalAndWait()
                    results.[i] <- w ()
                with e -> errors.Enqueue e))
    for t in threads do t.Start()
    for t in threads do t.Join()
    match errors.TryDequeue() with
    | true, e -> raise (AggregateException(e))
    | _ -> List.ofArray results

/// `passes` passes of `session` over the inputs in turn, starting at input `first`.
let private repeatedly (passes: int) (first: int) (session: EngineSession) (inputs: Tensor list) =
    [ for i in 0 .. passes - 1 -> session.Run(inputs.[(first + i) % inputs.Length]) ]

/// Each result of `repeatedly _ first` has the bits of the expected result for its input.
let private expectPasses (what: string) (first: int) (expected: Tensor list) (results: Tensor list) =
    results |> List.iteri (fun i y -> expectSameBits $"{what}, pass {i}" y expected.[(first + i) % expected.Length])

/// Two threads at once, each running `passes` passes of a session over the inputs, the second starting at the other input
/// (so the threads never run the same input at the same moment); every result checked against `expected`.
let private onTwoThreads (what: string) (passes: int) (a: EngineSession) (b: EngineSession) (expected: Tensor list) =
    match concurrently [ (fun () -> repeatedly passes 0 a zooInputs); (fun () -> repeatedly passes 1 b zooInputs) ] with
    | [ first; second ] ->
        expectPasses $"{what}, thread 1" 0 expected first
        expectPasses $"{what}, thread 2" 1 expected second
    | _ -> failtest "two threads, two results"

[<Tests>]
let tests =
    testList "Engine.EngineSession" [
        test "a session gives the bits of Forward.Run, on its first pass and on later passes that reuse its packs and buffers" {
            for name, model in zooModels.Force() do
                use session = EngineSession.Open(model, options 2)
                for x in zooInputs @ zooInputs do
                    expectSameBits name (session.Run x) (Forward.Run(model, x, twoThreads))
                Expect.isGreaterThan session.PackedWeightBytes 0L $"{name}: the session holds its packs"
                Expect.isGreaterThan session.PooledBufferBytes 0L $"{name}: and pooled intermediates"
        }
        test "a model with hooks runs through a session as through Forward.Run, and nothing is pooled (intermediates can be seen)" {
            let seen = ref 0
            let hook = ForwardHook("count", Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ _ -> seen.Value <- seen.Value + 1; null))
            let model = (smallModel 1).AddHook hook
            let x = randomTensor (Random 3) [| 4; 16; 24; 24 |]
            use session = EngineSession.Open(model, options 2)
            expectSameBits "hooked" (session.Run x) (Forward.Run(model, x, twoThreads))
            Expect.equal seen.Value 2 "the hook ran once per pass"
            Expect.equal session.PooledBufferBytes 0L "no buffer recycled"
            Expect.equal session.PeakPooledBufferBytes 0L "none ever"
        }
        test "two sessions of different models on two threads at once give the bits each gives alone" {
            let models = zooModels.Force() |> List.filter (fun (n, _) -> n.EndsWith " fused")
            let alone = [ for _, m in models -> [ for x in zooInputs -> Forward.Run(m, x, oneThread) ] ]
            let sessions = [ for _, m in models -> EngineSession.Open(m, options 1) ]
            try
                let together = concurrently [ for s in sessions -> fun () -> repeatedly 6 0 s zooInputs ]
                for (name, _), expected, results in List.zip3 models alone together do
                    expectPasses name 0 expected results
            finally
                for s in sessions do s.Dispose()
        }
        test "two sessions of one model on two threads at once (each packing the same weights) give the bits of one" {
            let name, model = zooModels.Force() |> List.find (fun (n, _) -> n = "resnet18 fused")
            let expected = [ for x in zooInputs -> Forward.Run(model, x, oneThread) ]
            // Fresh sessions, so both first passes (the packing ones) run at the same time.
            use a = EngineSession.Open(model, options 1)
            use b = EngineSession.Open(model, options 1)
            onTwoThreads name 6 a b expected
            Expect.equal a.PackedWeightBytes b.PackedWeightBytes "each session holds the same packs, its own"
        }
        test "one session called from two threads at once gives the bits of one (its passes share packs and pool)" {
            let name, model = zooModels.Force() |> List.find (fun (n, _) -> n = "mobilenet_v2 fused")
            let expected = [ for x in zooInputs -> Forward.Run(model, x, oneThread) ]
            use session = EngineSession.Open(model, options 1)
            onTwoThreads name 6 session session expected
        }
        test "Run after Dispose throws ObjectDisposedException; the session then holds nothing, and disposing again does nothing" {
            let model = smallModel 1
            let x = randomTensor (Random 4) [| 4; 16; 24; 24 |]
            let session = EngineSession.Open(model, options 2)
            session.Run x |> ignore
            Expect.isGreaterThan session.PackedWeightBytes 0L "packs before"
            Expect.isGreaterThan session.PooledBufferBytes 0L "buffers before"
            session.Dispose()
            Support.throwsOf<ObjectDisposedException> (fun () -> session.Run x |> ignore) |> ignore
            Expect.equal session.PackedWeightBytes 0L "no packs after"
            Expect.equal session.PooledBufferBytes 0L "no buffers after"
            session.Dispose()
            Support.throwsOf<ObjectDisposedException> (fun () -> session.Run x |> ignore) |> ignore
        }
        test "Open refuses a null model, a thread count below one and a negative memory limit" {
            Support.throwsOf<ArgumentNullException> (fun () -> EngineSession.Open(Unchecked.defaultof<Module>) |> ignore) |> ignore
            Support.throwsOf<ArgumentOutOfRangeException> (fun () -> EngineSession.Open(smallModel 1, options 0) |> ignore) |> ignore
            Support.throwsOf<ArgumentOutOfRangeException> (fun () ->
                EngineSession.Open(smallModel 1, EngineSessionOptions(MaxPooledBufferBytes = Nullable -1L)) |> ignore) |> ignore
            use s = EngineSession.Open(smallModel 1)
            Expect.equal s.Threads Environment.ProcessorCount "every core by default"
            Expect.equal s.MaxPooledBufferBytes (256L <<< 20) "256 MiB by default"
        }
        test "the pool never holds more than the session's limit (0 keeps nothing), from one thread or two, with the same bits" {
            let name, model = zooModels.Force() |> List.find (fun (n, _) -> n = "mobilenet_v2 fused")
            let expected = [ for x in zooInputs -> Forward.Run(model, x, oneThread) ]
            let unlimitedPeak =
                use s = EngineSession.Open(model, options 1)
                repeatedly 4 0 s zooInputs |> ignore
                s.PeakPooledBufferBytes
            // Half of what the model pools when nothing stops it: the limit must refuse arrays.
            for limit in [ unlimitedPeak / 2L; 0L ] do
                use s = EngineSession.Open(model, EngineSessionOptions(Threads = Nullable 1, MaxPooledBufferBytes = Nullable limit))
                Expect.equal s.MaxPooledBufferBytes limit "the limit as given"
                expectPasses $"{name}, limit {limit}" 0 expected (repeatedly 4 0 s zooInputs)
                onTwoThreads $"{name}, limit {limit}" 4 s s expected
                Expect.isLessThanOrEqual s.PeakPooledBufferBytes limit $"limit {limit}: peak {s.PeakPooledBufferBytes} (unlimited: {unlimitedPeak})"
                Expect.isLessThanOrEqual s.PooledBufferBytes limit $"limit {limit}: now"
            Expect.isGreaterThan unlimitedPeak 0L "the model pools buffers when allowed"
        }
        test "a session's packs and buffers are its own: EngineMemory, which counts Forward.Run's process-wide stores, does not see them" {
            let conv = Fusion.Dsl.Layers.Conv.Create(2, 16, 10, [| 1 |], bias = false, seed = 7)
            use session = EngineSession.Open(conv, options 2)
            session.Run(randomTensor (Random 8) [| 1; 16; 5; 5 |]) |> ignore
            // Two panels of six rows (the last zero-padded), 16 deep.
            Expect.equal session.PackedWeightBytes (int64 (2 * 6 * 16 * sizeof<float32>)) "the session's packs"
            Expect.equal (EngineMemory.PackedWeightBytes conv) 0L "none in the process-wide store"
        }
        testSequenced <| test "disposing a session releases its packs and buffers while the model stays alive" {
            let model = smallModel 5
            let x = randomTensor (Random 6) [| 16; 16; 96; 96 |]
            let session = EngineSession.Open(model, options 2)
            session.Run x |> ignore
            session.Run x |> ignore
            let held = session.PackedWeightBytes + session.PooledBufferBytes
            Expect.isGreaterThan held (20L * releaseTolerance) "the session holds far more than the tolerance"
            let withSession = settledManagedBytes ()
            session.Dispose()
            let released = withSession - settledManagedBytes ()
            Expect.isGreaterThan released (held - releaseTolerance) $"released {released} bytes of the {held} the session held"
            GC.KeepAlive model
        }
        testSequenced <| test "200 models loaded, run and disposed leave the managed heap where it started (within releaseTolerance)" {
            let dir = Directory.CreateTempSubdirectory("fusion-session-").FullName
            try
                let path = ModelFile.Write(Path.Combine(dir, "model"), smallModel 9)
                let x = randomTensor (Random 10) [| 4; 16; 24; 24 |]
                /// Loads the model, runs it twice and disposes the session; returns what the session held.
                let cycle () =
                    use session = EngineSession.Open(ModelFile.Read path, options 2)
                    session.Run x |> ignore
                    session.Run x |> ignore
                    session.PackedWeightBytes + session.PooledBufferBytes
                // A first cycle compiles the code and fills the runtime's own pools (the kernels' scratch in
                // ArrayPool<float>.Shared), which later cycles reuse.
                cycle () |> ignore
                let before = settledManagedBytes ()
                let held = [ for _ in 1 .. 200 -> cycle () ] |> List.sum
                let growth = settledManagedBytes () - before
                Expect.isGreaterThan held (20L * releaseTolerance) "200 sessions held far more than the tolerance in all"
                Expect.isLessThan growth releaseTolerance $"the heap grew by {growth} bytes over 200 models (they held {held} in all)"
            finally
                Directory.Delete(dir, true)
        }
    ]
