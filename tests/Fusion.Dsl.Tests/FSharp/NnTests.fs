module Fusion.Dsl.Tests.FSharp.NnTests

open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.FSharp

[<Tests>]
let tests =
    testList "FSharp.Nn" [
        test "constructors take PyTorch's argument names and defaults" {
            let c = Nn.Conv2d(3, 16, 3, stride = 2, padding = 1, bias = false) :?> Conv
            Expect.equal c.TypeName "Conv2d" "type name"
            Expect.sequenceEqual c.Stride [ 2; 2 ] "scalar stride broadcasts like PyTorch's _pair"
            Expect.sequenceEqual c.Padding.Amounts [ 1; 1 ] "padding amounts"
            Expect.isNull c.Bias "bias=false leaves no bias"
            Expect.sequenceEqual c.Weight.Dimensions [ 16; 3; 3; 3 ] "weight shape [out, in/groups, k, k]"
        }
        test "padding accepts PyTorch's string form" {
            let c = Nn.Conv1d(2, 2, 5, padding = "same") :?> Conv
            Expect.equal c.Padding.Kind PaddingKind.Same "same padding"
            let e = Support.throwsOf<System.ArgumentException> (fun () -> Nn.Conv1d(2, 2, 5, padding = "full") |> ignore)
            Expect.stringContains e.Message "'full'" "names the bad value"
        }
        test "kernel, stride, padding and dilation take PyTorch's tuple forms" {
            let c = Nn.Conv2d(3, 8, (3, 1), stride = (2, 1), padding = (0, 1), dilation = (1, 2)) :?> Conv
            Expect.sequenceEqual c.KernelSize [ 3; 1 ] "kernel"
            Expect.sequenceEqual c.Stride [ 2; 1 ] "stride"
            Expect.sequenceEqual c.Padding.Amounts [ 0; 1 ] "padding"
            Expect.sequenceEqual c.Dilation [ 1; 2 ] "dilation"
            let t = Nn.ConvTranspose3d(2, 2, (3, 1, 1), stride = (2, 1, 1), output_padding = (1, 0, 0)) :?> Conv
            Expect.sequenceEqual t.OutputPadding [ 1; 0; 0 ] "output_padding"
            Expect.equal (Nn.ConvTranspose2d(2, 2, 3, padding_mode = "zeros")) (Nn.ConvTranspose2d(2, 2, 3)) "padding_mode takes PyTorch's one value"
            Expect.throws (fun () -> Nn.ConvTranspose2d(2, 2, 3, padding_mode = "reflect") |> ignore) "and refuses the others, as PyTorch does"
            let p = Nn.MaxPool2d((3, 2), stride = (2, 1), padding = 1) :?> MaxPool2d
            Expect.sequenceEqual p.KernelSize [ 3; 2 ] "pool kernel"
            Expect.sequenceEqual p.ScalarArguments [ "padding"; "dilation" ] "the int forms kept as PyTorch keeps them"
            Expect.isFalse ((Nn.AdaptiveAvgPool2d((1, 1)) :?> AdaptiveAvgPool2d).OutputSizeIsScalar) "tuple output_size"
        }
        test "the F# Nn is the C# factory: the same arguments give equal modules" {
            Expect.equal (Nn.Conv2d(3, 4, 3, padding = 1, seed = 2)) (Fusion.Dsl.Nn.Conv2d(3, 4, 3, padding = 1, seed = 2) :> Module) "Conv2d"
            Expect.equal (Nn.Linear(3, 4, seed = 2)) (Fusion.Dsl.Nn.Linear(3, 4, seed = 2) :> Module) "Linear"
        }
        test "the same seed gives bit-identical weights, another seed different ones" {
            Expect.equal (Nn.Linear(4, 3, seed = 7)) (Nn.Linear(4, 3, seed = 7)) "same seed"
            Expect.notEqual (Nn.Linear(4, 3, seed = 7)) (Nn.Linear(4, 3, seed = 8)) "other seed"
        }
        test ">-> chains stay flat and keep explicit Sequentials nested" {
            let chain = Nn.Conv2d(3, 4, 3) >-> Nn.BatchNorm2d 4 >-> Nn.ReLU()
            Expect.sequenceEqual [ for c in chain.Children -> c.Module.TypeName ] [ "Conv2d"; "BatchNorm2d"; "ReLU" ] "flat chain"
            let nested = Nn.Sequential [ Nn.ReLU(); Nn.ReLU() ] >-> Nn.Identity()
            Expect.sequenceEqual [ for c in nested.Children -> c.Module.TypeName ] [ "Sequential"; "Identity" ] "explicit Sequential kept"
        }
        test "a user container's forward graph calls its children by path" {
            let block =
                Nn.Module("Block", [ "conv", Nn.Conv2d(4, 4, 3, padding = 1); "relu", Nn.ReLU() ], fun g ->
                    let x = g.Input()
                    let y = g.Call("relu", g.Call("conv", x))
                    g.Output(g.AddValues(y, x)))
            let u = block :?> UserModule
            Expect.sequenceEqual (nonNull u.Forward).ModuleCalls [ "conv"; "relu" ] "module calls in order"
            let e = Support.throwsOf<System.ArgumentException> (fun () ->
                Nn.Module("Bad", [ "conv", Nn.Conv2d(4, 4, 3) ], fun g -> g.Output(g.Call("conv2", g.Input()))) |> ignore)
            Expect.stringContains e.Message "conv2" "names the missing child"
        }
    ]
