module Fusion.Dsl.Tests.AlgebraTests

open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open System.Collections.Generic

let private convBnRelu seed =
    Sequential.Create(
        Conv.Create(2, 3, 4, [| 3 |], seed = seed) :> Module,
        BatchNorm.Create(2, 4),
        Activation.Create(ActivationKind.ReLU))

[<Tests>]
let tests =
    testList "Algebra" [
        test "replacing a module with itself returns the same root" {
            let m = convBnRelu 1
            let same = ModulePath.Replace(m, "1", ModulePath.Get(m, "1"))
            Expect.isTrue (obj.ReferenceEquals(m, same)) "identity rewrite must return the same object"
        }
        test "replace shares every subtree off the path" {
            let inner = convBnRelu 1
            let root = Sequential.Create(inner :> Module, convBnRelu 2)
            let r = ModulePath.Replace(root, "0.2", Identity.Create())
            Expect.isFalse (obj.ReferenceEquals(root, r)) "a change makes a new root"
            Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(root, "1"), ModulePath.Get(r, "1"))) "sibling subtree shared"
            Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(root, "0.0"), ModulePath.Get(r, "0.0"))) "untouched leaf shared"
            Expect.equal (ModulePath.Get(r, "0.2").TypeName) "Identity" "replacement in place"
            Expect.equal (ModulePath.Get(root, "0.2").TypeName) "ReLU" "input unchanged"
        }
        test "ReplaceAll rebuilds each module on the changed paths once and shares the rest" {
            let root = Sequential.Create(convBnRelu 1 :> Module, convBnRelu 2, convBnRelu 3)
            let r = ModulePath.ReplaceAll(root, [ KeyValuePair("0.1", Identity.Create() :> Module); KeyValuePair("0.2", Identity.Create()) ])
            Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(root, "1"), ModulePath.Get(r, "1"))) "sibling subtree shared"
            Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(root, "0.0"), ModulePath.Get(r, "0.0"))) "untouched leaf shared"
            Expect.equal [ for c in ModulePath.Get(r, "0").Children -> c.Module.TypeName ] [ "Conv2d"; "Identity"; "Identity" ] "both replaced"
            Expect.equal (ModulePath.Get(root, "0.2").TypeName) "ReLU" "input unchanged"
        }
        test "ReplaceAll sees earlier replacements: a later path may lie inside an earlier one" {
            let root = Sequential.Create(convBnRelu 1 :> Module, convBnRelu 2)
            let r = ModulePath.ReplaceAll(root, [ KeyValuePair("1", convBnRelu 5 :> Module); KeyValuePair("1.2", Identity.Create()) ])
            Expect.equal (ModulePath.Get(r, "1.0")) (ModulePath.Get(convBnRelu 5, "0")) "inside the earlier replacement"
            Expect.equal (ModulePath.Get(r, "1.2").TypeName) "Identity" "then replaced inside it"
        }
        test "ReplaceAll names the whole path that is missing after the earlier replacements" {
            let root = Sequential.Create(convBnRelu 1 :> Module, convBnRelu 2)
            let e = Support.throwsOf<ModulePathException> (fun () ->
                ModulePath.ReplaceAll(root, [ KeyValuePair("1", Identity.Create() :> Module); KeyValuePair("1.2", Identity.Create()) ]) |> ignore)
            Expect.equal e.Path "1.2" "the whole path"
            Expect.equal e.MissingSegment "2" "the segment the Identity lacks"
        }
        test "a missing path names the segment and the children that exist" {
            let m = convBnRelu 1
            let e = Support.throwsOf<ModulePathException> (fun () -> ModulePath.Get(m, "7") |> ignore)
            Expect.equal e.MissingSegment "7" "missing segment"
            Expect.sequenceEqual e.ExistingChildren [ "0"; "1"; "2" ] "existing children"
            Expect.stringContains e.Message "no child '7'" "message names the segment"
        }
        test "structural equality is by value, not by reference" {
            Expect.equal (convBnRelu 3) (convBnRelu 3) "same construction, same value"
            Expect.notEqual (convBnRelu 3) (convBnRelu 4) "different weights differ"
        }
        test "train() shares subtrees already in the requested mode" {
            let m = convBnRelu 1
            Expect.isTrue (obj.ReferenceEquals(m, m.Eval())) "eval of an eval model is a no-op"
            let t = m.Train()
            Expect.isTrue (t.NamedModules() |> Seq.forall (fun kv -> kv.Value.Training)) "all in training mode"
        }
        test "a wrongly shaped weight is refused with its expected shape" {
            let w = Tensor.Zeros(4, 3, 2, 2)
            let e = Support.throwsOf<System.ArgumentException> (fun () -> Conv.Create(2, 3, 4, [| 3 |], weight = w) |> ignore)
            Expect.stringContains e.Message "[4, 3, 3, 3]" "names the expected shape"
        }
    ]

[<Tests>]
let parameterCounts =
    testList "Algebra.ParameterCount" [
        test "parameters exclude BatchNorm's running statistics, as PyTorch's parameters() does" {
            let bn = BatchNorm.Create(2, 4) :> Module
            Expect.equal (bn.ParameterCount()) 8L "weight and bias only"
            Expect.equal (bn.StateElementCount()) 17L "plus mean, var and the batch counter"
        }
    ]

[<Tests>]
let pathTests =
    testList "Algebra.Paths" [
        test "ModulePath.Join spells a child's path as named_modules does" {
            Expect.equal (ModulePath.Join("", "features")) "features" "below the root"
            Expect.equal (ModulePath.Join("features.3", "conv")) "features.3.conv" "below a module"
        }
        test "a PathSet tells members from paths strictly inside or above them, by whole segments" {
            let s = PathSet()
            s.Add "layer1.0.conv1"
            s.Add "layer2"
            Expect.isTrue (s.Contains "layer1.0.conv1") "a member"
            Expect.isFalse (s.Nests "layer1.0.conv1") "a member is not nested in itself"
            Expect.isTrue (s.Nests "layer1.0") "above a member"
            Expect.isTrue (s.Nests "layer1") "further above"
            Expect.isTrue (s.Nests "layer2.1.bn") "inside a member"
            Expect.isFalse (s.Nests "layer1.0.conv10") "a name that only starts like a member"
            Expect.isFalse (s.Nests "layer20") "a sibling that shares a prefix"
            Expect.isFalse (s.Nests "") "the root counts as neither"
            s.Clear()
            Expect.isFalse (s.Nests "layer1") "cleared"
            Expect.equal s.Count 0 "empty"
        }
    ]
