/// Fuser.FindFusableGroups: on torchvision's networks (the zoo and the PyTorch fixtures) it finds exactly the groups, in the order,
/// that torchvision's own fuse_model() fuses; it prefers the longest match, honours the dataflow check, modes, hooks and guards.
module Fusion.Dsl.Tests.Analysis.GroupDiscoveryTests

open System.IO
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Zoo
open Fusion.Dsl.Conformance
open Fusion.Dsl.Discovery

let private asLists (groups: seq<#seq<string>>) = [ for g in groups -> List.ofSeq g ]

let private find (model: Module) = Fuser.FindFusableGroups(model) |> asLists

/// The fixture cases that record a torchvision network's own fuse_model() list (eval form).
let private netCases () =
    Support.fixtureCases ()
    |> Array.filter (fun f -> (string (Path.GetFileName f)).StartsWith "net_")

[<Tests>]
let tests =
    testList "Analysis.GroupDiscovery" [
        for name in [ "resnet18"; "resnet50"; "mobilenet_v2" ] do
            test (sprintf "on the zoo's %s the groups found are torchvision's fuse_model() groups, in its order" name) {
                let zoo = ModelZoo.Create(name)
                Expect.equal (find zoo.Model) (asLists zoo.FuseGroups) "same groups, same order"
            }

        testList "on each torchvision network fixture the groups found are its fuse list, in order" [
            for file in (try netCases () with _ -> [| "<fixture folder missing>" |]) do
                test (Path.GetFileNameWithoutExtension file |> string) {
                    let case = FixtureCase.Load file
                    Expect.equal (find case.Model) (asLists case.Fuse.Groups) "same groups, same order"
                }
        ]

        test "the groups found fuse without error, and the result has no group left to find" {
            let zoo = ModelZoo.Create("mobilenet_v2", widthMult = 0.35)
            let groups = Fuser.FindFusableGroups(zoo.Model)
            let fused = Fuser.FuseModules(zoo.Model, groups |> Seq.map (fun g -> g :> seq<string>))
            Expect.isEmpty (find fused) (sprintf "nothing left: %A" (find fused))
        }

        test "the longest match wins, and extended rules find the patterns PyTorch lacks" {
            let model = seq false [ conv 2 3 4 1 1 false; bn 2 4 2 false; relu6 false; conv 2 4 4 1 3 false; bn 2 4 4 false; relu false ]
            Expect.equal (find model) [ [ "0"; "1" ]; [ "3"; "4"; "5" ] ] "defaults: Conv+BN (no ReLU6 rule), then Conv+BN+ReLU"
            Expect.equal (Fuser.FindFusableGroups(model, RuleSet.Extended) |> asLists) [ [ "0"; "1"; "2" ]; [ "3"; "4"; "5" ] ]
                "extended: Conv+BN+ReLU6"
            let viaOptions = Fuser.FindFusableGroups(model, FuseOptions(Rules = RuleSet.Extended)) |> asLists
            Expect.equal viaOptions [ [ "0"; "1"; "2" ]; [ "3"; "4"; "5" ] ] "the options' effective rules"
        }

        test "an unsafe run is cut where the dataflow forbids it: BasicBlock's reused relu is left out" {
            Expect.equal (find (DataflowTests.basicBlock ())) [ [ "conv1"; "bn1" ]; [ "conv2"; "bn2" ] ] "conv1+bn1, not the shared relu"
            Expect.equal (find (DataflowTests.quantizableBlock ())) [ [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "bn2" ] ] "quantizable block"
        }

        test "guards are checked for the requested form: a training model gives no folding group, but QAT groups" {
            let model = seq true [ conv 2 3 4 1 1 true; bn 2 4 2 true; relu true ]
            Expect.equal (find model) [ [ "1"; "2" ] ] "eval folding refused in training mode; BN+ReLU still fuses"
            Expect.equal (Fuser.FindFusableGroups(model, isQat = true) |> asLists) [ [ "0"; "1"; "2" ] ] "QAT keeps the BatchNorm"
        }

        test "mixed modes and hooks that fusion would drop exclude a group" {
            let mixed = seq false [ conv 2 3 4 1 1 false; bn 2 4 2 true ]
            Expect.isEmpty (find mixed) "mixed modes"
            let hooked = seq false [ (conv 2 3 4 1 1 false).AddHook(fwdHook "h"); bn 2 4 2 false ]
            Expect.isEmpty (find hooked) "a forward hook on the first module would be lost"
            let kept = seq false [ (conv 2 3 4 1 1 false).AddPreHook(preHook "p"); bn 2 4 2 false ]
            Expect.equal (find kept) [ [ "0"; "1" ] ] "a pre-hook on the first module moves to the fused module"
        }

        test "inside a user container without a graph nothing is found: its dataflow is unknown" {
            Expect.isEmpty (find (modelForFusion false)) "graph-less root"
        }

        test "a custom fuser function has no patterns to find" {
            let options = FuseOptions(FuserFunc = System.Func<_, _, _>(fun (m: System.Collections.Generic.IReadOnlyList<Module>) (_: bool) -> m))
            let e = Support.throwsOf<System.ArgumentException> (fun () -> Fuser.FindFusableGroups(seq false [], options) |> ignore)
            Expect.stringContains e.Message "FuserFunc" "names the option"
        }
    ]
