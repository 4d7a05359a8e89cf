/// Laws of graph evaluation: the argument forms torch.fx records (positional, keyword, varargs or tuple shapes) mean
/// what torch means, calls reach modules by dotted path with their hooks, and mistakes are named.
module Fusion.Dsl.Tests.Engine.GraphInterpreterTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Reference
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.Engine.EngineSupport.GraphNodes

let private callModule (name: string) (target: string) (arg: string) = GraphNode(NodeOp.CallModule, name, target, [ r arg ])

/// Runs a one-input graph over a container with the given children.
let private run (children: (string * Module) list) (nodes: GraphNode list) (x: Tensor) =
    let m = UserModule.Create("Net", ModuleChildren.Create([| for n, m in children -> struct (n, m) |]), Graph(input :: nodes))
    Forward.Run(m, x)

let private shape (t: Tensor) = Seq.toList t.Dimensions

[<Tests>]
let tests =
    testList "Engine.GraphInterpreter" [
        test "reshape/view with varargs, with a tuple, and torch.reshape agree and infer -1" {
            let x = randomTensor (Random 1) [| 2; 4; 3; 3 |]
            let forms =
                [ meth "y" "reshape" [ r "x"; c (box -1L); c (box 36L) ] []
                  meth "y" "view" [ r "x"; ints [ -1; 36 ] ] []
                  fn "y" "reshape" [ r "x"; ints [ -1; 36 ] ] [] ]
            for node in forms do
                let y = run [] [ node; output "y" ] x
                Expect.equal (shape y) [ 2; 36 ] $"{node}"
                Expect.sequenceEqual (y.ToArray()) (x.ToArray()) "same elements in order"
        }
        test "squeeze, unsqueeze and flatten follow torch's dimension rules and defaults" {
            let x = randomTensor (Random 2) [| 2; 1; 3; 1 |]
            let shapeOf node = shape (run [] [ node; output "y" ] x)
            Expect.equal (shapeOf (meth "y" "squeeze" [ r "x" ] [])) [ 2; 3 ] "squeeze(): every size-1 dim"
            Expect.equal (shapeOf (meth "y" "squeeze" [ r "x"; c (box 1L) ] [])) [ 2; 3; 1 ] "squeeze(1)"
            Expect.equal (shapeOf (meth "y" "squeeze" [ r "x"; c (box 0L) ] [])) [ 2; 1; 3; 1 ] "squeeze of a non-1 dim is a no-op"
            Expect.equal (shapeOf (meth "y" "squeeze" [ r "x" ] [ "dim", c (box -1L) ])) [ 2; 1; 3 ] "squeeze(dim=-1)"
            Expect.equal (shapeOf (meth "y" "unsqueeze" [ r "x"; c (box -1L) ] [])) [ 2; 1; 3; 1; 1 ] "unsqueeze(-1) appends"
            Expect.equal (shapeOf (meth "y" "unsqueeze" [ r "x"; c (box 0L) ] [])) [ 1; 2; 1; 3; 1 ] "unsqueeze(0)"
            Expect.equal (shapeOf (fn "y" "flatten" [ r "x" ] [])) [ 6 ] "torch.flatten defaults to start_dim=0"
            Expect.equal (shapeOf (fn "y" "flatten" [ r "x"; c (box 1L) ] [])) [ 2; 3 ] "flatten(x, 1)"
            Expect.equal (shapeOf (meth "y" "flatten" [ r "x" ] [ "start_dim", c (box 1L); "end_dim", c (box 2L) ])) [ 2; 3; 1 ] "keywords"
        }
        test "add broadcasts tensors and scalars; mul too; contiguous is the identity" {
            let x = randomTensor (Random 3) [| 2; 3; 1 |]
            let b = randomTensor (Random 4) [| 4 |]
            let m = UserModule.Create("Net", ModuleChildren.Empty, Graph([ input; output "x" ]), state = TensorDict.Create(struct ("b", b)))
            let net =
                UserModule.Create("Net", ModuleChildren.Empty,
                    Graph([ input
                            GraphNode(NodeOp.GetAttr, "b", "b")
                            fn "s" "add" [ r "x"; r "b" ] []
                            meth "t" "mul" [ r "s"; c (box 2.5) ] []
                            meth "u" "contiguous" [ r "t" ] []
                            output "u" ]),
                    state = m.State)
            let y = Forward.Run(net, x)
            Expect.equal (shape y) [ 2; 3; 4 ] "broadcast shape"
            let xs, bs, ys = x.ToArray(), b.ToArray(), y.ToArray()
            for i in 0 .. 5 do
                for k in 0 .. 3 do
                    Expect.equal ys.[i * 4 + k] ((xs.[i] + bs.[k]) * 2.5f) $"element {i},{k}"
        }
        test "cat joins along dim (positional or keyword) and keeps each part's elements" {
            let x = randomTensor (Random 5) [| 2; 3; 2 |]
            for node in [ fn "y" "cat" [ GraphArg.List([| r "x"; r "r" |]); c (box 1L) ] []
                          fn "y" "cat" [ GraphArg.List([| r "x"; r "r" |]) ] [ "dim", c (box -2L) ] ] do
                let y = run [] [ meth "r" "relu" [ r "x" ] []; node; output "y" ] x
                Expect.equal (shape y) [ 2; 6; 2 ] "shape"
                let xs, ys = x.ToArray(), y.ToArray()
                for n in 0 .. 1 do
                    for j in 0 .. 5 do
                        for k in 0 .. 1 do
                            let src = xs.[(n * 3 + j % 3) * 2 + k]
                            let expected = if j < 3 then src else max src 0f
                            Expect.equal ys.[(n * 6 + j) * 2 + k] expected $"element {n},{j},{k}"
        }
        test "adaptive_avg_pool2d(x, [1, 1]) is the spatial mean and relu/hardsigmoid match their formulas" {
            let x = randomTensor (Random 6) [| 2; 3; 4; 5 |]
            let y = run [] [ fn "p" "adaptive_avg_pool2d" [ r "x"; ints [ 1; 1 ] ] []; output "p" ] x
            Expect.equal (shape y) [ 2; 3; 1; 1 ] "shape"
            let xs = x.ToArray()
            for p in 0 .. 5 do
                let mean = (Array.sub xs (p * 20) 20 |> Array.sumBy float) / 20.0
                Expect.floatClose Accuracy.medium (float (y.ToArray().[p])) mean $"plane {p}"
            let h = run [] [ fn "h" "hardsigmoid" [ r "x" ] []; output "h" ] x
            expectClose "hardsigmoid" Support.Tol.kernelRel Support.Tol.kernelAbs h (NaiveReference.Activation(ActivationKind.Hardsigmoid, x))
        }
        test "call_module reaches a nested module by dotted path and runs its hooks; nodes with unused values still run" {
            let log = List<string>()
            let conv = Conv.Create(2, 2, 2, [| 1 |], seed = 1)
            let relu = Activation.Create(ActivationKind.ReLU).AddHook(ForwardHook("seen", Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ _ -> log.Add "relu"; null)))
            let block = UserModule.Create("Block", ModuleChildren.Create([| struct ("conv", conv :> Module); struct ("act", relu) |]))
            let x = randomTensor (Random 7) [| 1; 2; 3; 3 |]
            let y = run [ "block", block ] [ callModule "a" "block.conv" "x"; callModule "dead" "block.act" "x"; output "a" ] x
            expectSameBits "block.conv" y (Forward.Run(conv, x))
            Expect.sequenceEqual log [ "relu" ] "the unused call ran once, as torch.fx's code does"
        }
        test "an in-place activation is seen by every value sharing its input, as PyTorch's aliasing makes it" {
            // a = conv x; v = a.flatten(1) (a view of a); r = ReLU(inplace=True)(a); s = a + r; t = s + v.reshape(a's shape)
            // PyTorch: a, v and r all read relu(conv x) after the in-place call, so t = 3 relu(conv x).
            let conv = Conv.Create(2, 2, 2, [| 3 |], padding = ConvPadding.Explicit 1, seed = 6)
            let x = randomTensor (Random 9) [| 1; 2; 48; 48 |]
            let relu = (Forward.Run(conv, x)).ToArray() |> Array.map (fun v -> max v 0f)
            let expected = tensorOf (relu |> Array.map (fun v -> v + v + v)) [| 1; 2; 48; 48 |]
            let graphWith (inplaceCall: GraphNode) =
                [ callModule "a" "conv" "x"
                  fn "v" "flatten" [ r "a"; c (box 1L) ] []
                  inplaceCall
                  fn "s" "add" [ r "a"; r "r" ] []
                  meth "vb" "reshape" [ r "v"; ints [ 1; 2; 48; 48 ] ] []
                  fn "t" "add" [ r "s"; r "vb" ] []
                  output "t" ]
            let children = [ "conv", conv :> Module; "relu", Activation.Create(ActivationKind.ReLU, inplace = true) :> Module ]
            expectSameBits "ReLU(inplace=True) module" (run children (graphWith (callModule "r" "relu" "a")) x) expected
            expectSameBits "F.relu(x, inplace=True)" (run children (graphWith (fn "r" "relu" [ r "a" ] [ "inplace", c (box true) ])) x) expected
            // Without inplace, a keeps its value: t = (a + relu a) + a.
            let plain = run children (graphWith (fn "r" "relu" [ r "a" ] [])) x
            let a = (Forward.Run(conv, x)).ToArray()
            expectSameBits "F.relu(x)" plain (tensorOf (Array.map2 (fun av rv -> av + rv + av) a relu) [| 1; 2; 48; 48 |])
        }
        test "torchvision's BasicBlock (one ReLU(inplace=True) called twice, a downsample) runs the same fused and unfused" {
            // The minimal case of the ResNet defect: after conv1+bn1 and conv2+bn2 fuse, bn1 and bn2 are Identity views of
            // their convs' outputs, the in-place ReLU rebinds them, and a dead value's storage was recycled while a live view
            // still held it (the downsample's output overwrote bn2's). Channels and size put every buffer in the pool.
            let c = 8
            let bn seed = randomBatchNorm2d seed c :> Module
            let conv seed k = Conv.Create(2, c, c, [| k |], padding = ConvPadding.Explicit(k / 2), bias = false, seed = seed) :> Module
            let children =
                [ "conv1", conv 1 3; "bn1", bn 2; "relu", Activation.Create(ActivationKind.ReLU, inplace = true) :> Module
                  "conv2", conv 3 3; "bn2", bn 4
                  "downsample", Sequential.Create([| conv 5 1; bn 6 |]) :> Module ]
            let nodes =
                [ callModule "conv1" "conv1" "x"; callModule "bn1" "bn1" "conv1"; callModule "relu" "relu" "bn1"
                  callModule "conv2" "conv2" "relu"; callModule "bn2" "bn2" "conv2"
                  callModule "downsample" "downsample" "x"
                  fn "add" "add" [ r "bn2"; r "downsample" ] []
                  callModule "relu_1" "relu" "add"; output "relu_1" ]
            let block = UserModule.Create("BasicBlock", ModuleChildren.Create([| for n, m in children -> struct (n, m) |]), Graph(input :: nodes))
            let x = randomTensor (Random 10) [| 2; c; 24; 24 |]
            let unfused = Forward.Run(block, x)
            let fused = Fusion.Dsl.Fuser.FuseModules(block, [ seq [ "conv1"; "bn1" ]; seq [ "conv2"; "bn2" ] ])
            // The law: relu(bn2(conv2(relu(bn1(conv1 x)))) + bn(conv x)), layer by layer in float64.
            let reference =
                let at (name: string) = Fusion.Dsl.Algebra.ModulePath.Get(block, name)
                let bnOf name (t: Tensor) = NaiveReference.BatchNorm(at name :?> BatchNorm, t)
                let convOf name (t: Tensor) = NaiveReference.Conv(at name :?> Conv, t)
                let relu (t: Tensor) = NaiveReference.Activation(ActivationKind.ReLU, t)
                let main = x |> convOf "conv1" |> bnOf "bn1" |> relu |> convOf "conv2" |> bnOf "bn2"
                let short = x |> convOf "downsample.0" |> bnOf "downsample.1"
                relu (tensorOf (Array.map2 (+) (main.ToArray()) (short.ToArray())) (Seq.toArray main.Dimensions))
            expectClose "unfused against the float64 law" Support.Tol.kernelRel Support.Tol.kernelAbs unfused reference
            for pass in 1 .. 3 do // later passes reuse the pooled buffers of earlier ones
                expectClose $"fused pass {pass} against unfused" Support.Tol.equivRel Support.Tol.equivAbs (Forward.Run(fused, x)) unfused
        }
        test "an unknown keyword and a wrong argument kind are named" {
            let x = randomTensor (Random 8) [| 2; 3 |]
            let e1 = Support.throwsOf<ForwardException> (fun () -> run [] [ fn "y" "flatten" [ r "x" ] [ "start", c (box 1L) ]; output "y" ] x |> ignore)
            Expect.stringContains e1.Message "'start'" "unknown keyword named"
            let e2 = Support.throwsOf<ForwardException> (fun () -> run [] [ meth "y" "unsqueeze" [ r "x"; c (box "a") ] []; output "y" ] x |> ignore)
            Expect.stringContains e2.Message "'dim'" "argument named"
            Expect.equal e2.ModuleType "Net" "the container is named"
            let e3 = Support.throwsOf<ForwardException> (fun () -> run [] [ meth "y" "reshape" [ r "x"; ints [ 4; -1 ] ] []; output "y" ] x |> ignore)
            Expect.stringContains e3.Message "[4, -1]" "impossible shape named"
        }
    ]
