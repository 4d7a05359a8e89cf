/// Laws of the forward pass as a whole: fused groups equal their parts run one by one, hooks run once each in
/// PyTorch's order and can replace values, bad inputs are refused with the module's path and the shapes involved.
module Fusion.Dsl.Tests.Engine.ForwardTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

let private act kind = Activation.Create(kind) :> Module

let private evalBn (rng: Random) (rank: int) (c: int) =
    BatchNorm.Create(rank, c, 1e-5, Nullable 0.1, true, true, randomTensor rng [| c |], randomTensor rng [| c |],
                     randomTensor rng [| c |], Tensor.Generate((fun _ -> float32 (0.3 + rng.NextDouble())), [| c |]), Tensor.ScalarInt64 1L)

let private preHook (log: List<string>) name (replace: Tensor -> Tensor | null) =
    ForwardPreHook(name, Func<Module, Tensor, Tensor | null>(fun _ x -> log.Add name; replace x))

let private hook (log: List<string>) name (replace: Tensor -> Tensor | null) =
    ForwardHook(name, Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ y -> log.Add name; replace y))

let private keep (_: Tensor) : Tensor | null = null

[<Tests>]
let tests =
    testList "Engine.Forward" [
        test "Conv + activation fused is bit-identical to the conv followed by the activation, for every kind and conv path" {
            let rng = Random 21
            let convs =
                [ Conv.Create(2, 8, 12, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1)              // Toeplitz GEMM
                  Conv.Create(2, 8, 12, [| 3 |], [| 2 |], ConvPadding.Explicit 1, seed = 2)               // gather GEMM
                  Conv.Create(2, 8, 8, [| 3 |], padding = ConvPadding.Explicit 1, groups = 8, seed = 3)   // depthwise
                  Conv.Create(2, 16, 16, [| 3 |], padding = ConvPadding.Explicit 1, seed = 5)             // Winograd
                  Conv.Create(1, 8, 6, [| 3 |], [| 2 |], ConvPadding.Explicit 1, transposed = true, seed = 4) ] // transposed
            for conv in convs do
                let groups =
                    if conv.Transposed then [ $"ConvTransposeReLU{conv.Rank}d", ActivationKind.ReLU ]
                    else [ $"ConvReLU{conv.Rank}d", ActivationKind.ReLU
                           $"ConvReLU6_{conv.Rank}d", ActivationKind.ReLU6
                           $"ConvHardswish{conv.Rank}d", ActivationKind.Hardswish
                           $"ConvSiLU{conv.Rank}d", ActivationKind.SiLU ]
                for name, kind in groups do
                    let x = randomTensor rng (if conv.Rank = 2 then [| 2; conv.InChannels; 11; 13 |] else [| 2; 8; 9 |])
                    let fused = FusedModule.Create(name, conv, act kind)
                    let parts = Sequential.Create(conv :> Module, act kind)
                    expectSameBits $"{name} (groups {conv.Groups})" (Forward.Run(fused, x)) (Forward.Run(parts, x))
        }
        test "a depthwise Conv + activation fused is bit-identical to the conv then the activation on rows narrower and wider than 16 (the epilogue over the whole plane, or row by row)" {
            let rng = Random 24
            let conv = Conv.Create(2, 8, 8, [| 3 |], padding = ConvPadding.Explicit 1, groups = 8, seed = 6)
            let strided = Conv.Create(2, 8, 8, [| 3 |], [| 2 |], ConvPadding.Explicit 1, groups = 8, seed = 7)
            for c, shape in [ conv, [| 2; 8; 7; 7 |]; conv, [| 1; 8; 5; 23 |]; strided, [| 1; 8; 14; 14 |]; strided, [| 1; 8; 9; 40 |] ] do
                for name, kind in [ "ConvReLU6_2d", ActivationKind.ReLU6; "ConvSiLU2d", ActivationKind.SiLU; "ConvHardswish2d", ActivationKind.Hardswish ] do
                    let x = randomTensor rng shape
                    let fused = FusedModule.Create(name, c, act kind)
                    expectSameBits $"{name} on {Tensor.ShapeString shape}" (Forward.Run(fused, x)) (Forward.Run(Sequential.Create(c :> Module, act kind), x))
        }
        test "Conv + eval BatchNorm (+ ReLU) fused equals the three layers run one by one" {
            let rng = Random 22
            for rank in 1 .. 3 do
                let conv = Conv.Create(rank, 4, 6, [| 3 |], padding = ConvPadding.Explicit 1, seed = rank)
                let bn = evalBn rng rank 6
                let x = randomTensor rng (Array.append [| 2; 4 |] (Array.create rank 5))
                let fused = FusedModule.Create($"ConvBnReLU{rank}d", conv, bn, act ActivationKind.ReLU)
                let parts = Sequential.Create(conv :> Module, bn, act ActivationKind.ReLU)
                expectClose $"ConvBnReLU{rank}d" Support.Tol.foldRel Support.Tol.foldAbs (Forward.Run(fused, x)) (Forward.Run(parts, x))
                let convBn = FusedModule.Create($"ConvBn{rank}d", conv, bn)
                expectClose $"ConvBn{rank}d" Support.Tol.foldRel Support.Tol.foldAbs (Forward.Run(convBn, x)) (Forward.Run(Sequential.Create(conv :> Module, bn), x))
        }
        test "training-mode ConvBnReLU (batch statistics) equals its parts run one by one" {
            let rng = Random 23
            let conv = Conv.Create(2, 3, 5, [| 3 |], seed = 1, training = true)
            let bn = (evalBn rng 2 5).WithTraining(true)
            let x = randomTensor rng [| 3; 3; 6; 6 |]
            let fused = FusedModule.Create("ConvBnReLU2d", conv, bn, Activation.Create(ActivationKind.ReLU, training = true))
            let parts = Sequential.Create(conv :> Module, bn, Activation.Create(ActivationKind.ReLU, training = true))
            expectSameBits "qat group" (Forward.Run(fused, x)) (Forward.Run(parts, x))
        }
        test "Linear + ReLU fused is bit-identical to Linear then ReLU (dot-product and GEMM paths); LinearBn1d folds within tolerance" {
            let rng = Random 24
            let lin = Linear.Create(20, 9, seed = 3)
            for rows in [ 1; 2; 17 ] do
                let x = randomTensor rng [| rows; 20 |]
                expectSameBits $"LinearReLU rows {rows}" (Forward.Run(FusedModule.Create("LinearReLU", lin, act ActivationKind.ReLU), x))
                    (Forward.Run(Sequential.Create(lin :> Module, act ActivationKind.ReLU), x))
                let bn = evalBn rng 1 9
                expectClose $"LinearBn1d rows {rows}" Support.Tol.foldRel Support.Tol.foldAbs (Forward.Run(FusedModule.Create("LinearBn1d", lin, bn), x))
                    (Forward.Run(Sequential.Create(lin :> Module, bn), x))
        }
        test "BNReLU equals BatchNorm then ReLU bit for bit" {
            let rng = Random 25
            let bn = evalBn rng 2 3
            let x = randomTensor rng [| 2; 3; 4; 4 |]
            expectSameBits "BNReLU2d" (Forward.Run(FusedModule.Create("BNReLU2d", bn, act ActivationKind.ReLU), x))
                (Forward.Run(Sequential.Create(bn :> Module, act ActivationKind.ReLU), x))
        }
        test "hooks run once each, pre-hooks before and hooks after, parents around children, in registration order" {
            let log = List<string>()
            let a = Conv.Create(2, 2, 2, [| 1 |], seed = 1).AddPreHook(preHook log "a.pre" keep).AddHook(hook log "a.post1" keep).AddHook(hook log "a.post2" keep)
            let b = act(ActivationKind.ReLU).AddPreHook(preHook log "b.pre1" keep).AddPreHook(preHook log "b.pre2" keep).AddHook(hook log "b.post" keep)
            let root = Sequential.Create(a, b).AddPreHook(preHook log "root.pre" keep).AddHook(hook log "root.post" keep)
            Forward.Run(root, randomTensor (Random 1) [| 1; 2; 3; 3 |]) |> ignore
            Expect.sequenceEqual log [ "root.pre"; "a.pre"; "a.post1"; "a.post2"; "b.pre1"; "b.pre2"; "b.post"; "root.post" ] "order"
        }
        test "a pre-hook's replacement input and a hook's replacement output are used" {
            let log = List<string>()
            let twice (x: Tensor) : Tensor | null = tensorOf (x.ToArray() |> Array.map (fun v -> 2f * v)) (Seq.toArray x.Dimensions)
            let m = Identity.Create().AddPreHook(preHook log "double input" twice).AddHook(hook log "double output" twice)
            let y = Forward.Run(m, tensorOf [| 1f; -3f |] [| 2 |])
            Expect.sequenceEqual (y.ToArray()) [| 4f; -12f |] "x * 2 * 2"
        }
        test "hooks on the children of a fused group still run (the group then runs child by child)" {
            let log = List<string>()
            let conv = Conv.Create(2, 2, 3, [| 3 |], seed = 2)
            let relu = act(ActivationKind.ReLU).AddHook(hook log "relu.post" keep)
            let fused = FusedModule.Create("ConvReLU2d", conv, relu)
            let x = randomTensor (Random 3) [| 1; 2; 5; 5 |]
            let y = Forward.Run(fused, x)
            Expect.sequenceEqual log [ "relu.post" ] "child hook ran once"
            expectSameBits "same result" y (Forward.Run(FusedModule.Create("ConvReLU2d", conv, act ActivationKind.ReLU), x))
        }
        test "a wrong channel count names the module path, its type and both shapes" {
            let model = Sequential.Create(Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], seed = 1) :> Module) :> Module)
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(model, Tensor.Zeros(2, 5, 8, 8)) |> ignore)
            Expect.equal e.ModulePath "0.0" "path"
            Expect.equal e.ModuleType "Conv2d" "type"
            Expect.stringContains e.Message "[N, 3, H, W]" "expected shape"
            Expect.stringContains e.Message "[2, 5, 8, 8]" "actual shape"
        }
        test "a wrong rank for BatchNorm and a wrong feature count for Linear are refused with both shapes" {
            let e1 = Support.throwsOf<ForwardException> (fun () -> Forward.Run(BatchNorm.Create(2, 3), Tensor.Zeros(2, 3, 4)) |> ignore)
            Expect.stringContains e1.Message "[N, 3, H, W]" "bn expected"
            Expect.stringContains e1.Message "[2, 3, 4]" "bn actual"
            let e2 = Support.throwsOf<ForwardException> (fun () -> Forward.Run(Linear.Create(4, 2), Tensor.Zeros(3, 5)) |> ignore)
            Expect.stringContains e2.Message "[*, 4]" "linear expected"
            Expect.stringContains e2.Message "[3, 5]" "linear actual"
        }
        test "an input too small for the kernel is refused with the sizes" {
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(Conv.Create(2, 1, 1, [| 5 |], seed = 1), Tensor.Zeros(1, 1, 3, 3)) |> ignore)
            Expect.stringContains e.Message "[3, 3]" "padded input"
            Expect.stringContains e.Message "[5, 5]" "kernel"
        }
        test "Dropout is the identity in eval mode and refused in training mode unless p is 0 or 1" {
            let x = randomTensor (Random 4) [| 3; 4 |]
            Expect.isTrue (obj.ReferenceEquals(Forward.Run(Dropout.Create(0.3), x), x)) "eval: identity"
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(Dropout.Create(0.3, training = true), x) |> ignore)
            Expect.stringContains e.Message "random" "explains why"
            // ATen: p = 0 keeps every element, p = 1 returns zeros_like(input); neither is random.
            Expect.isTrue (obj.ReferenceEquals(Forward.Run(Dropout.Create(0.0, training = true), x), x)) "training, p = 0"
            Expect.sequenceEqual ((Forward.Run(Dropout.Create(1.0, training = true), x)).ToArray()) (Array.zeroCreate 12) "training, p = 1"
        }
        test "a graph-less user container is refused with its name; QuantStub and DeQuantStub are the identity" {
            let x = randomTensor (Random 5) [| 2; 2 |]
            Expect.isTrue (obj.ReferenceEquals(Forward.Run(UserModule.Create("QuantStub", ModuleChildren.Empty), x), x)) "QuantStub"
            Expect.isTrue (obj.ReferenceEquals(Forward.Run(UserModule.Create("DeQuantStub", ModuleChildren.Empty), x), x)) "DeQuantStub"
            let block = UserModule.Create("BasicBlock", ModuleChildren.Create([| struct ("conv", Conv.Create(2, 2, 2, [| 1 |]) :> Module) |]))
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(Sequential.Create(block :> Module), x) |> ignore)
            Expect.equal e.ModulePath "0" "path"
            Expect.equal e.ModuleType "BasicBlock" "type named"
        }
        test "the input tensor is never written, whichever kernels run" {
            let x = randomTensor (Random 6) [| 1; 4; 9; 9 |]
            let copy = x.ToArray()
            let model =
                Sequential.Create(
                    FusedModule.Create("ConvReLU2d", Conv.Create(2, 4, 4, [| 3 |], padding = ConvPadding.Explicit 1, seed = 1), act ActivationKind.ReLU) :> Module,
                    Conv.Create(2, 4, 4, [| 3 |], groups = 4, seed = 2), act ActivationKind.Hardswish, MaxPool2d.Create([| 2 |]))
            Forward.Run(model, x) |> ignore
            Expect.sequenceEqual (x.ToArray()) copy "input bits unchanged"
        }
        test "recycled intermediate buffers change nothing: results equal a hooked (non-recycling) pass bit for bit, and earlier results stay intact" {
            let noop = ForwardHook("no-op", Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ _ -> null))
            for name in [ "resnet18"; "mobilenet_v2" ] do
                let z = Fusion.Dsl.Zoo.ModelZoo.Create(name, seed = 3, randomizeBatchNorm = true)
                let fused = Fusion.Dsl.Fuser.FuseModules(z.Model, z.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
                for model in [ z.Model; fused ] do
                    let x1 = randomTensor (Random 1) [| 2; 3; 48; 48 |]
                    let x2 = randomTensor (Random 2) [| 2; 3; 48; 48 |]
                    let y1 = Forward.Run(model, x1)
                    let y1Bits = y1.ToArray()
                    let y2 = Forward.Run(model, x2)
                    // A hook anywhere turns recycling off for the whole pass.
                    let hooked = model.AddHook noop
                    expectSameBits $"{name}: recycled vs fresh buffers" (Forward.Run(model, x1)) (Forward.Run(hooked, x1))
                    expectSameBits $"{name}: second input" y2 (Forward.Run(hooked, x2))
                    Expect.sequenceEqual (y1.ToArray()) y1Bits $"{name}: an earlier result is never overwritten"
        }
        test "a graph whose values are views, reused, and unused keeps every live value intact while buffers are recycled" {
            // a = conv x; an unused conv a; f = flatten a (a view); b = conv a (a's last direct use); c = conv b (the first
            // allocation after a's node is dead, while its view f is still live); r = relu f; s = reshape r + c.
            let conv = Conv.Create(2, 2, 2, [| 3 |], padding = ConvPadding.Explicit 1, seed = 4)
            let ref' (n: string) = GraphArg.Ref n
            let k (v: int64) = GraphArg.Const(box v)
            let g =
                Graph(
                    [ GraphNode(NodeOp.Placeholder, "x")
                      GraphNode(NodeOp.CallModule, "a", "conv", [ ref' "x" ])
                      GraphNode(NodeOp.CallModule, "unused", "conv", [ ref' "a" ])
                      GraphNode(NodeOp.CallFunction, "f", "flatten", [ ref' "a"; k 1L ])
                      GraphNode(NodeOp.CallModule, "b", "conv", [ ref' "a" ])
                      GraphNode(NodeOp.CallModule, "c", "conv", [ ref' "b" ])
                      GraphNode(NodeOp.CallFunction, "r", "relu", [ ref' "f" ])
                      GraphNode(NodeOp.CallMethod, "rb", "reshape", [ ref' "r"; k -1L; k 2L; k 48L; k 48L ])
                      GraphNode(NodeOp.CallFunction, "s", "add", [ ref' "rb"; ref' "c" ])
                      GraphNode(NodeOp.Output, "out", args = [ ref' "s" ]) ])
            let net = UserModule.Create("Net", ModuleChildren.Create([| struct ("conv", conv :> Module) |]), g)
            let x = randomTensor (Random 5) [| 1; 2; 48; 48 |]
            let a = Forward.Run(conv, x)
            let c = Forward.Run(conv, Forward.Run(conv, a))
            let expected = tensorOf (Array.map2 (fun av cv -> max av 0f + cv) (a.ToArray()) (c.ToArray())) [| 1; 2; 48; 48 |]
            for _ in 1 .. 3 do expectSameBits "graph" (Forward.Run(net, x)) expected
        }
        test "a non-positive thread count is refused" {
            let e = Support.throwsOf<ArgumentOutOfRangeException> (fun () -> Forward.Run(Identity.Create(), Tensor.Zeros(1), ForwardOptions(Threads = Nullable 0)) |> ignore)
            Expect.stringContains e.Message "Threads" "names the option"
        }
    ]
