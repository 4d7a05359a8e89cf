/// ModelDiff: what fusion changed between a model and its fused form.
module Fusion.Dsl.Tests.Analysis.ModelDiffTests

open Expecto
open Fusion.Dsl
open Fusion.Dsl.Analysis
open Fusion.Dsl.Layers

let private model () =
    Nn.Sequential(
        struct ("conv1", Nn.Conv2d(3, 16, IntOrTuple.op_Implicit 3, bias = false) :> Algebra.Module),
        struct ("bn1", Nn.BatchNorm2d 16 :> Algebra.Module),
        struct ("relu1", Nn.ReLU() :> Algebra.Module),
        struct ("fc", Nn.Sequential(Nn.Flatten() :> Algebra.Module, Nn.Linear(16, 2)) :> Algebra.Module))

[<Tests>]
let tests =
    testList "Analysis.ModelDiff" [
        test "an eval Conv+BN+ReLU fusion: one group replaced, two Identity, BatchNorm's parameters folded away" {
            let m = model ()
            let f = Fuser.FuseModules(m, [ "conv1"; "bn1"; "relu1" ])
            let d = ModelDiff.Compare(m, f)
            Expect.equal d.Replaced.Count 1 "one replaced module"
            let r = d.Replaced[0]
            Expect.equal (r.Path, r.BeforeType, r.AfterType) ("conv1", "Conv2d", "ConvReLU2d") "the group's head"
            Expect.sequenceEqual [ for kv in r.IdentityPaths -> kv.Key, kv.Value ] [ "bn1", "BatchNorm2d"; "relu1", "ReLU" ] "the rest of the group"
            // A law of the fold: BatchNorm's weight and bias (2 x 16) go, the folded conv gains a bias (16).
            Expect.equal d.ParametersFolded 16L "2*16 BatchNorm parameters out, 16 bias parameters in"
            Expect.equal d.ParametersBefore (m.ParameterCount()) "before"
            Expect.containsAll d.RemovedState [ "bn1.weight"; "bn1.bias"; "bn1.running_mean"; "bn1.running_var"; "bn1.num_batches_tracked"; "conv1.weight" ] "removed keys"
            Expect.containsAll d.AddedState [ "conv1.0.weight"; "conv1.0.bias" ] "keys under the fused container"
            Expect.stringContains (string d) "conv1: Conv2d -> ConvReLU2d (bn1: BatchNorm2d, relu1: ReLU -> Identity)" "report line"
        }
        test "a fold that keeps the kind (Conv+BN -> Conv2d) is still a replacement" {
            let m = model ()
            let d = ModelDiff.Compare(m, Fuser.FuseModules(m, [ "conv1"; "bn1" ]))
            Expect.equal [ for r in d.Replaced -> r.Path, r.AfterType ] [ "conv1", "Conv2d" ] "conv1 folded"
            Expect.equal [ for kv in d.Identities -> kv.Key ] [ "bn1" ] "bn1 gone"
        }
        test "a model compared with itself has no differences" {
            let m = model ()
            let d = ModelDiff.Compare(m, m)
            Expect.isTrue d.IsEmpty "empty"
            Expect.equal d.ParametersFolded 0L "nothing folded"
        }
        test "neither model changes" {
            let m = model ()
            let f = Fuser.FuseModules(m, [ "conv1"; "bn1"; "relu1" ])
            let before, after = string m, string f
            ModelDiff.Compare(m, f) |> ignore
            Expect.equal (string m, string f) (before, after) "unchanged"
        }
    ]
