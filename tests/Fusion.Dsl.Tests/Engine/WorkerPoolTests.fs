/// Laws of the engine's spinning workers: every item of a job runs exactly once, a body's exception reaches the
/// caller and leaves the pool usable, a loop nested in a job runs inline, and forward passes on several threads at once
/// (the pool busy with one of them, the others on the thread pool) give the bits of one pass at a time.
module Fusion.Dsl.Tests.Engine.WorkerPoolTests

open System
open System.Threading
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Layers
open Fusion.Dsl.Tests.Engine.EngineSupport

/// Runs `count` items through the shared pool with `threads` threads and returns how often each item ran.
let private runCounts (count: int) (threads: int) =
    let hits = Array.zeroCreate<int> count
    let ran = WorkerPool.Shared.TryRun(count, threads, fun i -> Interlocked.Increment(&hits.[i]) |> ignore)
    ran, hits

[<Tests>]
let tests =
    // Sequenced: these tests need the shared pool to themselves (other tests' forward passes would make it busy).
    testSequenced <| testList "Engine.WorkerPool" [
        test "every item of 500 jobs of 1 to 300 items runs exactly once" {
            let rng = Random 3
            for job in 1 .. 500 do
                let count = rng.Next(1, 301)
                let ran, hits = runCounts count (rng.Next(2, 5))
                if Environment.ProcessorCount > 1 then Expect.isTrue ran $"job {job}: the idle pool takes the job"
                if ran then Expect.all hits (fun h -> h = 1) $"job {job} ({count} items): each item once"
        }
        test "a body's exception reaches the caller, and the next job runs normally" {
            if Environment.ProcessorCount > 1 then
                let boom () = WorkerPool.Shared.TryRun(64, 2, fun i -> if i = 7 then raise (InvalidOperationException "item 7")) |> ignore
                let e = Expect.throwsC boom id
                Expect.equal e.Message "item 7" "the body's own exception"
                let ran, hits = runCounts 100 2
                Expect.isTrue ran "the pool is free again"
                Expect.all hits (fun h -> h = 1) "each item once"
            else Expect.isFalse (WorkerPool.Shared.TryRun(4, 2, ignore)) "one core: the pool has no workers and declines (Par.For runs inline)"
        }
        test "a parallel loop inside a job runs inline on the item's thread" {
            let inner = Array.zeroCreate<int> 16
            let outer = WorkerPool.Shared.TryRun(4, 2, fun i ->
                let id = Environment.CurrentManagedThreadId
                Par.For(4, 2, 1L <<< 20, fun j -> if Environment.CurrentManagedThreadId = id then Interlocked.Increment(&inner.[4 * i + j]) |> ignore))
            if Environment.ProcessorCount > 1 then Expect.isTrue outer "the idle pool takes the job"
            if outer then Expect.all inner (fun h -> h = 1) "every inner item ran once, on its outer item's thread"
        }
        test "forward passes on four threads at once give the bits of one pass at a time" {
            let net =
                Sequential.Create(
                    Conv.Create(2, 16, 32, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1),
                    Activation.Create ActivationKind.ReLU,
                    Conv.Create(2, 32, 24, [| 1 |], seed = 2),
                    Conv.Create(2, 24, 24, [| 3 |], padding = ConvPadding.Explicit 1, groups = 24, seed = 3))
            let inputs = [| for s in 1 .. 4 -> randomTensor (Random s) [| 2; 16; 20; 20 |] |]
            let alone = inputs |> Array.map (fun x -> Forward.Run(net, x, twoThreads))
            let together = Array.zeroCreate inputs.Length
            let threads = [| for i in 0 .. 3 -> Thread(fun () -> for _ in 1 .. 10 do together.[i] <- Forward.Run(net, inputs.[i], twoThreads)) |]
            threads |> Array.iter (fun t -> t.Start())
            threads |> Array.iter (fun t -> t.Join())
            for i in 0 .. 3 do expectSameBits $"input {i}" together.[i] alone.[i]
        }
    ]
