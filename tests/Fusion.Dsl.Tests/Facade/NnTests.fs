/// The C# Nn factory (src/Fusion.Dsl/Nn.cs): torch.nn's constructors, names and defaults.
module Fusion.Dsl.Tests.Facade.NnTests

open System
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers

// The C# factory, named in full: the F# layer's Nn is not opened here.
type private N = Fusion.Dsl.Nn

/// F# converts a method argument to IntOrTuple by its op_Implicit, but not on to the nullable the optional sizes take.
type private A =
    static member S(v: IntOrTuple) = Nullable v

[<Tests>]
let tests =
    testList "Facade.Nn" [
        test "Conv2d broadcasts an int kernel, stride and padding like PyTorch's _pair" {
            let c = N.Conv2d(3, 16, 3, stride = A.S 2, padding = 1, bias = false)
            Expect.sequenceEqual c.KernelSize [ 3; 3 ] "kernel"
            Expect.sequenceEqual c.Stride [ 2; 2 ] "stride"
            Expect.sequenceEqual c.Padding.Amounts [ 1; 1 ] "padding"
            Expect.isNull c.Bias "bias=False"
            // nn.Conv2d(3, 16, 3).weight.shape == (16, 3, 3, 3)
            Expect.sequenceEqual c.Weight.Dimensions [ 16; 3; 3; 3 ] "weight shape"
        }
        test "tuple kernel, stride, padding and dilation keep one value per dimension" {
            let c = N.Conv2d(3, 8, (3, 1), stride = A.S((2, 1)),
                             padding = (0, 1), dilation = A.S((1, 2)))
            Expect.sequenceEqual c.KernelSize [ 3; 1 ] "kernel"
            Expect.sequenceEqual c.Stride [ 2; 1 ] "stride"
            Expect.sequenceEqual c.Padding.Amounts [ 0; 1 ] "padding"
            Expect.sequenceEqual c.Dilation [ 1; 2 ] "dilation"
            Expect.sequenceEqual c.Weight.Dimensions [ 8; 3; 3; 1 ] "weight [out, in, kh, kw]"
        }
        test "padding \"same\" and \"valid\" are PyTorch's string forms" {
            Expect.equal (N.Conv3d(2, 2, 3, padding = "same")).Padding.Kind PaddingKind.Same "same"
            Expect.equal (N.Conv1d(2, 2, 3, padding = "valid")).Padding.Kind PaddingKind.Valid "valid"
        }
        test "ConvTranspose takes output_padding and PyTorch's transposed weight layout" {
            let c = N.ConvTranspose2d(3, 4, 3, stride = A.S 2,
                                      outputPadding = A.S 1)
            Expect.equal c.TypeName "ConvTranspose2d" "kind"
            Expect.sequenceEqual c.OutputPadding [ 1; 1 ] "output_padding"
            // nn.ConvTranspose2d(3, 4, 3).weight.shape == (3, 4, 3, 3): [in, out/groups, k, k]
            Expect.sequenceEqual c.Weight.Dimensions [ 3; 4; 3; 3 ] "weight"
        }
        test "padding_mode is PyTorch's string; an unknown one is refused by name" {
            Expect.equal (N.Conv1d(2, 2, 3, paddingMode = "reflect")).PaddingMode PaddingMode.Reflect "reflect"
            let e = Support.throwsOf<ArgumentException> (fun () -> N.Conv1d(2, 2, 3, paddingMode = "mirror") |> ignore)
            Expect.stringContains e.Message "\"mirror\"" "names the bad value"
            Expect.stringContains e.Message "padding_mode" "names the argument"
        }
        test "BatchNorm, Linear and the activations have PyTorch's defaults" {
            let bn = N.BatchNorm2d 16
            Expect.equal (bn.Eps, bn.Momentum, bn.Affine, bn.TrackRunningStats) (1e-5, Nullable 0.1, true, true) "BatchNorm2d defaults"
            Expect.isFalse (N.BatchNorm1d(4, momentum = Nullable())).Momentum.HasValue "momentum=None"
            let l = N.Linear(4, 5)
            Expect.sequenceEqual l.Weight.Dimensions [ 5; 4 ] "Linear weight [out, in]"
            Expect.isTrue l.HasBias "bias default"
            Expect.equal (N.ReLU6(inplace = true)).Kind ActivationKind.ReLU6 "ReLU6"
            Expect.isTrue (N.ReLU(inplace = true)).Inplace "inplace"
            Expect.equal (N.Dropout()).P 0.5 "Dropout p"
            Expect.equal ((N.Flatten()).StartDim, (N.Flatten()).EndDim) (1, -1) "Flatten dims"
        }
        test "pools default the stride to the kernel and keep the int or tuple form PyTorch keeps" {
            let p = N.MaxPool2d(3)
            Expect.sequenceEqual p.Stride [ 3; 3 ] "stride = kernel_size"
            Expect.sequenceEqual p.ScalarArguments [ "kernel_size"; "stride"; "padding"; "dilation" ] "every size given as an int"
            let a = N.AvgPool2d((3, 2), padding = A.S 1)
            Expect.sequenceEqual a.KernelSize [ 3; 2 ] "tuple kernel"
            Expect.sequenceEqual a.ScalarArguments [ "padding" ] "only padding given as an int"
            Expect.isTrue (N.AdaptiveAvgPool2d(1)).OutputSizeIsScalar "output_size=1"
            Expect.isFalse (N.AdaptiveAvgPool2d((1, 1))).OutputSizeIsScalar "output_size=(1, 1)"
        }
        test "Sequential from modules numbers the children, from (name, module) pairs keeps the names" {
            let s = N.Sequential(N.Conv2d(1, 2, 3) :> Module, N.ReLU())
            Expect.sequenceEqual s.Children.Names [ "0"; "1" ] "numbered"
            let named = N.Sequential(struct ("conv", N.Conv2d(1, 2, 3) :> Module), struct ("relu", N.ReLU() :> Module))
            Expect.sequenceEqual named.Children.Names [ "conv"; "relu" ] "named"
            Expect.equal (N.Sequential()).Children.Count 0 "empty"
            Support.throwsOf<ArgumentException> (fun () -> N.Sequential(struct ("a.b", N.ReLU() :> Module)) |> ignore) |> ignore
        }
        test "new modules start in eval mode (kept on purpose, see docs/guide.md)" {
            Expect.isFalse (N.Conv2d(1, 1, 1)).Training "eval by default"
            Expect.isFalse (N.BatchNorm2d 1).Training "eval by default"
        }
        test "the same seed gives bit-identical weights" {
            Expect.equal (N.Conv2d(3, 4, 3, seed = 5)) (N.Conv2d(3, 4, 3, seed = 5)) "same seed"
            Expect.notEqual (N.Conv2d(3, 4, 3, seed = 5)) (N.Conv2d(3, 4, 3, seed = 6)) "other seed"
        }
    ]
