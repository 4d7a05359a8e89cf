/// Laws of BatchNorm: running statistics in eval mode, batch statistics (biased variance) in training mode or
/// without tracked statistics, affine or not, every rank; and the forward pass leaves the module untouched.
module Fusion.Dsl.Tests.Engine.NormKernelsTests

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Reference
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

let private randomBn (rng: Random) (rank: int) (c: int) (training: bool) (affine: bool) (track: bool) =
    let pos () = Tensor.Generate((fun _ -> float32 (0.2 + rng.NextDouble())), [| c |])
    BatchNorm.Create(rank, c, 1e-3, Nullable 0.1, affine, track,
                     orNull affine (fun () -> randomTensor rng [| c |]), orNull affine (fun () -> randomTensor rng [| c |]),
                     orNull track (fun () -> randomTensor rng [| c |]), orNull track pos,
                     orNull track (fun () -> Tensor.ScalarInt64 3L), training)

[<Tests>]
let tests =
    testList "Engine.NormKernels" [
        test "BatchNorm of every rank and mode equals the float64 reference" {
            let rng = Random 9
            for rank in 1 .. 3 do
                for training in [ false; true ] do
                    for affine in [ false; true ] do
                        for track in [ false; true ] do
                            let c = rng.Next(1, 6)
                            let bn = randomBn rng rank c training affine track
                            let spatial = match rank with 1 -> (if rng.Next 2 = 0 then [||] else [| 5 |]) | 2 -> [| 4; 3 |] | _ -> [| 2; 3; 2 |]
                            let x = randomTensor rng (Array.append [| 3; c |] spatial)
                            expectClose $"{bn} training={training} on {Tensor.ShapeString x.Shape}" Support.Tol.kernelRel Support.Tol.kernelAbs
                                (Forward.Run(bn, x)) (NaiveReference.BatchNorm(bn, x))
        }
        test "a training-mode forward leaves the running statistics and the input untouched" {
            let bn = randomBn (Random 1) 2 4 true true true
            let before = bn.StateDict() |> Seq.map (fun kv -> kv.Key, [ for i in 0 .. kv.Value.Count - 1 -> kv.Value.[i] ]) |> List.ofSeq
            let x = randomTensor (Random 2) [| 2; 4; 3; 3 |]
            let xBefore = x.ToArray()
            Forward.Run(bn, x) |> ignore
            let after = bn.StateDict() |> Seq.map (fun kv -> kv.Key, [ for i in 0 .. kv.Value.Count - 1 -> kv.Value.[i] ]) |> List.ofSeq
            Expect.equal after before "state unchanged"
            Expect.sequenceEqual (x.ToArray()) xBefore "input unchanged"
        }
        test "batch statistics over a single value per channel are refused, as in PyTorch" {
            let bn = randomBn (Random 1) 1 4 true true true
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(bn, randomTensor (Random 2) [| 1; 4 |]) |> ignore)
            Expect.stringContains e.Message "more than 1 value per channel" "message"
        }
    ]
