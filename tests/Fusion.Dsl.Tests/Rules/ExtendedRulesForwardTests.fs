/// Forward equivalence through the engine: for every pattern of RuleSet.Extended, the fused model computes what the unfused one
/// computes (within Support.Tol.equivRel); the groups Fuser.FindFusableGroups finds fuse into an equivalent network; and a group the
/// dataflow check refuses really would change the output if forced.
module Fusion.Dsl.Tests.Rules.ExtendedRulesForwardTests

open System
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Zoo

let private extended = FuseOptions(Rules = RuleSet.Extended)
let private hardswish (training: bool) : Module = Activation.Create(ActivationKind.Hardswish, training = training)

/// Spatial size per rank, small enough for the 3-d cases.
let private spatial rank = Array.create rank (if rank = 3 then 5 else 7)

/// fused(x) equals model(x) for a random input of `shape`.
let private expectEquivalent (what: string) (model: Module) (fused: Module) (shape: int[]) =
    let x = randomTensor (Random(shape.Length * 31 + shape.[1])) shape
    let expected = Forward.Run(model, x)
    expectClose what Support.Tol.equivRel Support.Tol.equivAbs (Forward.Run(fused, x)) expected

let private all (n: int) = [ for i in 0 .. n - 1 -> string i ]

let private evalAndQat (what: string) (build: bool -> Module list) (shape: int[]) (qat: bool) =
    let model = seq false (build false)
    let n = (build false).Length
    expectEquivalent (what + " (eval)") model (Fuser.FuseModules(model, all n, extended)) shape
    if qat then
        let m = seq true (build true)
        expectEquivalent (what + " (QAT, batch statistics)") m (Fuser.FuseModulesQat(m, all n, extended)) shape

[<Tests>]
let tests =
    testList "Rules.ExtendedForward" [
        for rank in [ 1; 2; 3 ] do
            let shape = Array.append [| 2; 3 |] (spatial rank)
            test (sprintf "Conv%dd with ReLU6 or Hardswish, with and without BatchNorm, computes what the unfused layers compute" rank) {
                for act in [ relu6; hardswish ] do
                    evalAndQat (sprintf "conv+%s" (act false).TypeName) (fun t -> [ conv rank 3 4 3 1 t; act t ]) shape true
                    evalAndQat (sprintf "conv+bn+%s" (act false).TypeName) (fun t -> [ conv rank 3 4 3 1 t; bn rank 4 2 t; act t ]) shape true
            }
            test (sprintf "ConvTranspose%dd+ReLU and ConvTranspose%dd+BatchNorm+ReLU compute what the unfused layers compute" rank rank) {
                evalAndQat "convT+relu" (fun t -> [ convT rank 3 4 3 1 t; relu t ]) shape true
                evalAndQat "convT+bn+relu" (fun t -> [ convT rank 3 4 3 1 t; bn rank 4 2 t; relu t ]) shape false
            }
            test (sprintf "BatchNorm%dd before an unpadded Conv%dd folds into an equivalent conv" rank rank) {
                evalAndQat "bn+conv valid" (fun t -> [ bn rank 3 2 t; Conv.Create(rank, 3, 4, [| 3 |], padding = ConvPadding.Valid, training = t, seed = 4) ]) shape false
                evalAndQat "bn+conv strided grouped" (fun t ->
                    [ bn rank 4 2 t; Conv.Create(rank, 4, 6, [| 2 |], stride = [| 2 |], groups = 2, bias = false, training = t, seed = 4) ])
                    (Array.append [| 2; 4 |] (spatial rank)) false
            }

        test "BatchNorm2d before a Conv2d padding by copying (reflect, replicate, circular) folds exactly" {
            for mode in [ PaddingMode.Reflect; PaddingMode.Replicate; PaddingMode.Circular ] do
                evalAndQat (sprintf "bn+conv %A" mode)
                    (fun t -> [ bn 2 3 2 t; Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit 1, paddingMode = mode, training = t, seed = 4) ])
                    [| 2; 3; 7; 7 |] false
        }

        test "Linear+ReLU6, Linear+BatchNorm1d+ReLU, BatchNorm1d+ReLU and BatchNorm1d+Linear compute what the unfused layers compute" {
            evalAndQat "linear+relu6" (fun t -> [ linear 5 4 1 t; relu6 t ]) [| 3; 5 |] true
            evalAndQat "linear+bn+relu" (fun t -> [ linear 5 4 1 t; bn 1 4 2 t; relu t ]) [| 3; 5 |] true
            evalAndQat "bn1d+relu [N, C]" (fun t -> [ bn 1 4 2 t; relu t ]) [| 3; 4 |] true
            evalAndQat "bn1d+relu [N, C, L]" (fun t -> [ bn 1 4 2 t; relu t ]) [| 3; 4; 6 |] true
            evalAndQat "bn1d+linear" (fun t -> [ bn 1 5 2 t; linear 5 4 1 t ]) [| 3; 5 |] false
        }

        test "a zero-padded Conv after a BatchNorm is not foldable: forcing the algebra by hand changes the border outputs" {
            // Why the no-zero-padding guard exists: fold with padding removed, then pad the conv again, and compare.
            let n = bn 2 3 2 false
            let padded = Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit 1, seed = 4)
            let unpadded = Conv.Create(2, 3, 4, [| 3 |], weight = padded.Weight, biasTensor = padded.Bias)
            let folded = Folding.PrecedingBatchNormFolding.FoldBnConv(n, unpadded)
            let wrong = Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit 1, weight = folded.Weight, biasTensor = folded.Bias)
            let x = randomTensor (Random 5) [| 1; 3; 6; 6 |]
            let expected = Forward.Run(seq false [ n; padded ], x)
            let diff = (Forward.Run(wrong, x)).MaxAbsDiff expected
            Expect.isGreaterThan diff (100.0 * (Support.Tol.equivAbs + Support.Tol.equivRel * expected.MaxAbs())) "borders differ"
        }

        test "the groups found on mobilenet_v2 (random BatchNorm statistics) fuse into a network computing the same output" {
            let zoo = ModelZoo.Create("mobilenet_v2", widthMult = 0.35, randomizeBatchNorm = true, numClasses = 10)
            let groups = Fuser.FindFusableGroups(zoo.Model)
            let fused = Fuser.FuseModules(zoo.Model, groups |> Seq.map (fun g -> g :> seq<string>))
            expectEquivalent "mobilenet_v2" zoo.Model fused [| 1; 3; 64; 64 |]
        }

        test "BasicBlock's reused relu: forcing the refused group changes the output, the safe groups do not" {
            let block = Fusion.Dsl.Tests.Analysis.DataflowTests.basicBlock ()
            let x = randomTensor (Random 9) [| 1; 4; 6; 6 |]
            let expected = Forward.Run(block, x)
            let forced = Fuser.FuseModules(block, [ "conv1"; "bn1"; "relu" ], FuseOptions(AllowUnsafeDataflow = true))
            let diff = (Forward.Run(forced, x)).MaxAbsDiff expected
            Expect.isGreaterThan diff (100.0 * (Support.Tol.equivAbs + Support.Tol.equivRel * expected.MaxAbs()))
                "the relu after the residual add became an Identity"
            let safe = Fuser.FuseModules(block, Fuser.FindFusableGroups block |> Seq.map (fun g -> g :> seq<string>))
            expectEquivalent "safe groups" block safe [| 1; 4; 6; 6 |]
        }
    ]
