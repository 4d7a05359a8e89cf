/// PyTorch's test/quantization/eager/test_fuse_eager.py, as structural tests over the same models
/// (the forward checks of those tests belong to the engine).
module Fusion.Dsl.Tests.Rules.FuseEagerSuiteTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Tests.Folding
open Fusion.Dsl.Tests.TestModels

let private expectKinds (m: Module) (expected: (string * string) list) =
    for path, kind in expected do Expect.equal (kindAt path m) kind (sprintf "type of %s" path)

let private sequentialGroups =
    [ [ "conv1"; "relu1" ]
      for i in 0 .. 2 do [ for j in 0 .. 2 -> sprintf "features.%d.%d" i j ]
      [ "classifier.0"; "classifier.1" ] ]

[<Tests>]
let tests =
    testList "Rules.PyTorchSuite" [
        test "test_fuse_module_train: step-by-step QAT fusion of a training model" {
            let model = modelForFusion true
            let stepped = Fuser.FuseModulesQat(Fuser.FuseModulesQat(model, [ "conv1"; "bn1"; "relu1" ]), [ "sub1.conv"; "sub1.bn" ])
            expectKinds stepped [
                "conv1", "ConvBnReLU2d"; "bn1", "Identity"; "relu1", "Identity"
                "sub1.conv", "ConvBn2d"; "sub1.bn", "Identity"; "sub2.conv", "Conv2d"; "sub2.relu", "ReLU" ]
            let together = Fuser.FuseModulesQat(model, groups [ [ "conv1"; "bn1"; "relu1" ]; [ "sub1.conv"; "sub1.bn" ] ])
            Expect.equal together stepped "a list of lists gives the same model as fusing step by step"
        }
        test "test_fuse_module_eval: 1d/2d/3d fusions with dotted paths, in either group order" {
            let groupsA = [ [ "conv3"; "bn3"; "relu4" ]; [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "relu2" ]; [ "bn2"; "relu3" ]; [ "sub1.conv"; "sub1.bn" ] ]
            let fused = Fuser.FuseModules(modelForFusion false, groups groupsA)
            expectKinds fused [
                "conv1", "ConvReLU2d"; "conv1.0", "Conv2d"; "conv1.1", "ReLU"; "bn1", "Identity"; "relu1", "Identity"
                "conv2", "ConvReLU3d"; "conv2.0", "Conv3d"; "conv2.1", "ReLU"; "relu2", "Identity"
                "bn2", "BNReLU3d"; "relu3", "Identity"
                "conv3", "ConvReLU1d"; "conv3.0", "Conv1d"; "conv3.1", "ReLU"; "bn3", "Identity"
                "sub1.conv", "Conv2d"; "sub1.bn", "Identity"; "sub2.conv", "Conv2d"; "sub2.relu", "ReLU" ]
            let groupsB = [ [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "relu2" ]; [ "bn2"; "relu3" ]; [ "sub1.conv"; "sub1.bn" ]; [ "conv3"; "bn3"; "relu4" ] ]
            Expect.equal (Fuser.FuseModules(modelForFusion false, groups groupsB)) fused "independent groups commute"
        }
        test "test_fusion_sequential_model_train: QAT fusion through nested Sequentials" {
            let fused = Fuser.FuseModulesQat(modelWithSequentialFusion true, groups sequentialGroups)
            expectKinds fused [ "conv1", "ConvReLU2d"; "conv1.0", "Conv2d"; "conv1.1", "ReLU"; "relu1", "Identity"
                                "classifier.0", "LinearReLU"; "classifier.1", "Identity" ]
            for i in 0 .. 2 do
                expectKinds fused [ sprintf "features.%d.0" i, "ConvBnReLU2d"; sprintf "features.%d.1" i, "Identity"; sprintf "features.%d.2" i, "Identity" ]
        }
        test "test_fusion_sequential_model_eval: eval fusion through nested Sequentials" {
            let model = modelWithSequentialFusion false
            let fused = Fuser.FuseModules(model, groups sequentialGroups)
            expectKinds fused [ "conv1", "ConvReLU2d"; "relu1", "Identity"; "classifier.0", "LinearReLU"; "classifier.1", "Identity" ]
            for i in 0 .. 2 do
                expectKinds fused [ sprintf "features.%d.0" i, "ConvReLU2d"; sprintf "features.%d.1" i, "Identity"; sprintf "features.%d.2" i, "Identity" ]
            for path in [ "seq"; "quant"; "dequant" ] do
                Expect.isTrue (obj.ReferenceEquals(at path fused, at path model)) (sprintf "'%s' shared with the input" path)
        }
        test "test_fusion_conv_with_bias: QAT keeps each BatchNorm exactly as it was" {
            let model = modelForFusionWithBias true
            let fused = Fuser.FuseModulesQat(model, groups [ [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "bn2" ] ])
            expectKinds fused [ "conv1", "ConvBnReLU2d"; "bn1", "Identity"; "relu1", "Identity"; "conv2", "ConvBn2d"; "bn2", "Identity" ]
            Expect.isTrue (obj.ReferenceEquals(at "conv1.1" fused, at "bn1" model)) "bn1 weight, bias, running mean and var kept"
            Expect.isTrue (obj.ReferenceEquals(at "conv2.1" fused, at "bn2" model)) "bn2 kept"
            Expect.isTrue (obj.ReferenceEquals(at "conv1.0" fused, at "conv1" model)) "conv1 with its bias kept"
        }
        test "test_fusion_linear_bn_eval: Linear+BatchNorm1d folds into the Linear" {
            let model = modelForLinearBNFusion false
            let fused = Fuser.FuseModules(model, groups [ [ "fc"; "bn" ] ])
            expectKinds fused [ "fc", "Linear"; "bn", "Identity" ]
            let w, b = Reference.foldLinear (at "fc" model :?> Linear) (at "bn" model :?> BatchNorm)
            let fc = at "fc" fused :?> Linear
            Expect.isLessThanOrEqual (Reference.maxRelError fc.Weight w Fusion.Dsl.Tests.Support.Tol.foldAbsFloor) Fusion.Dsl.Tests.Support.Tol.foldRoundRel "weight"
            Expect.isLessThanOrEqual (Reference.maxRelError (req fc.Bias) b Fusion.Dsl.Tests.Support.Tol.foldAbsFloor) Fusion.Dsl.Tests.Support.Tol.foldRoundRel "bias"
        }
        test "test_fusion_convtranspose_bn_eval: ConvTranspose1d/2d/3d+BatchNorm fold into the ConvTranspose" {
            let model =
                user "ModelForConvTransposeBNFusion" false [
                    "conv1", convT 1 3 3 1 1 false; "bn1", bn 1 3 2 false
                    "conv2", convT 2 3 3 1 3 false; "bn2", bn 2 3 4 false
                    "conv3", convT 3 3 3 1 5 false; "bn3", bn 3 3 6 false ]
            let fused = Fuser.FuseModules(model, groups [ [ "conv1"; "bn1" ]; [ "conv2"; "bn2" ]; [ "conv3"; "bn3" ] ])
            expectKinds fused [ "conv1", "ConvTranspose1d"; "conv2", "ConvTranspose2d"; "conv3", "ConvTranspose3d"
                                "bn1", "Identity"; "bn2", "Identity"; "bn3", "Identity" ]
        }
        test "test_fuse_function_customization: a custom fuser replaces fc1 by Identity (PyTorch 1.13 ignores it)" {
            let model = user "SingleLayerLinearModel" false [ "fc1", linear 5 5 1 false ]
            let custom = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun _ _ -> [| Identity.Create() :> Module |])
            let fused = Fuser.FuseModules(model, groups [ [ "fc1" ] ], FuseOptions(FuserFunc = custom))
            expectKinds fused [ "fc1", "Identity" ]
        }
        test "test_forward_hooks_preserved: hooks of the first and last modules move to the fused modules, nested ones too" {
            let pre1, pre2, post1, post2 = preHook "conv1-pre", preHook "sub1.conv-pre", fwdHook "relu1-post", fwdHook "sub1.bn-post"
            let model =
                let m = modelForFusion true
                let m = ModulePath.Replace(m, "conv1", (at "conv1" m).AddPreHook pre1)
                let m = ModulePath.Replace(m, "sub1.conv", (at "sub1.conv" m).AddPreHook pre2)
                let m = ModulePath.Replace(m, "relu1", (at "relu1" m).AddHook post1)
                ModulePath.Replace(m, "sub1.bn", (at "sub1.bn" m).AddHook post2)
            let fused = Fuser.FuseModulesQat(Fuser.FuseModulesQat(model, [ "conv1"; "bn1"; "relu1" ]), [ "sub1.conv"; "sub1.bn" ])
            let c1, s1 = at "conv1" fused, at "sub1.conv" fused
            Expect.equal c1.TypeName "ConvBnReLU2d" "owner of conv1's hooks is the fused module"
            Expect.sequenceEqual c1.PreHooks [ pre1 ] "pre-hook once"
            Expect.sequenceEqual c1.Hooks [ post1 ] "forward hook once"
            Expect.equal s1.TypeName "ConvBn2d" "owner of sub1's hooks"
            Expect.sequenceEqual s1.PreHooks [ pre2 ] "nested pre-hook once"
            Expect.sequenceEqual s1.Hooks [ post2 ] "nested forward hook once"
            let hookCount = fused.NamedModules() |> Seq.sumBy (fun kv -> kv.Value.PreHooks.Length + kv.Value.Hooks.Length)
            Expect.equal hookCount 4 "no hook lost or duplicated anywhere in the tree"
        }
    ]
