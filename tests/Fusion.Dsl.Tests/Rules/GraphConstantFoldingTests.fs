/// Folding a per-channel constant mul/add after a Conv (GraphConstantFolding, ConstantFolding.FoldScaleShift): the folded model
/// computes what the original computes (the engine's forward of the unfolded graph is the reference), the operation nodes are
/// gone, chains fold in one pass, and every unsafe or non-per-channel site leaves the model as the same object.
module Fusion.Dsl.Tests.Rules.GraphConstantFoldingTests

open System
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Folding
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport

/// A user container with a forward graph and its own state tensors (read by get_attr).
let private net (children: (string * Module) list) (state: (string * Tensor) list) (build: GraphBuilder -> GraphValue -> GraphValue) : Module =
    let g = GraphBuilder()
    let x = g.Input()
    let graph = g.Output(build g x)
    let st = TensorDict.Create(state |> List.map (fun (k, v) -> struct (k, (v: Tensor | null))) |> Array.ofList)
    UserModule.Create("Net", ModuleChildren.Create(children |> List.map NamedModule), graph, state = st) :> Module

let private conv2d (inC: int) (outC: int) (groups: int) (bias: bool) seed =
    Conv.Create(2, inC, outC, [| 3 |], padding = ConvPadding.Explicit 1, groups = groups, bias = bias, seed = seed) :> Module

/// A float32 tensor whose channel c holds `f c`, shaped `shape` (every other dimension 1).
let private perChannel (f: int -> float32) (shape: int[]) = Tensor.Generate((fun i -> f i), shape)

let private scaleOf c = float32 c * 0.37f - 0.8f
let private shiftOf c = 0.25f - float32 c * 0.41f

/// Folds, then checks the result computes what the model computes on a seeded input of `shape`.
let private foldEquivalent (what: string) (model: Module) (shape: int[]) =
    let folded = Fuser.FoldGraphConstants model
    Expect.isFalse (obj.ReferenceEquals(folded, model)) $"{what}: something was folded"
    let x = randomTensor (Random 7) shape
    expectClose what Support.Tol.equivRel Support.Tol.equivAbs (Forward.Run(folded, x)) (Forward.Run(model, x))
    folded

/// The operations (targets of call_function / call_method nodes) and get_attr targets left in the root graph.
let private operations (m: Module) =
    let graph =
        match (m :?> UserModule).Forward with
        | null -> failtest "the container lost its graph"
        | g -> g
    graph.Nodes
    |> Seq.filter (fun n -> n.Op = NodeOp.CallFunction || n.Op = NodeOp.CallMethod || n.Op = NodeOp.GetAttr)
    |> Seq.map (fun n -> n.Target)
    |> List.ofSeq

let private unchanged (what: string) (model: Module) =
    Expect.isTrue (obj.ReferenceEquals(Fuser.FoldGraphConstants model, model)) $"{what}: the model is returned itself"
    Expect.isEmpty (GraphConstantFolding.Find model) $"{what}: no fold is found"

[<Tests>]
let tests =
    testList "Rules.GraphConstantFolding" [
        test "a scalar mul and a scalar add after a Conv2d fold into it: equivalent, and the operation nodes are gone" {
            let mulModel = net [ "conv", conv2d 3 4 1 true 1 ] [] (fun g x -> g.Function("mul", g.Call("conv", x), 1.75))
            let folded = foldEquivalent "conv * 1.75" mulModel [| 2; 3; 6; 6 |]
            Expect.isEmpty (operations folded) "no mul left"
            let addModel = net [ "conv", conv2d 3 4 1 true 1 ] [] (fun g x -> g.Function("add", 3L, g.Call("conv", x)))
            Expect.isEmpty (operations (foldEquivalent "3 + conv" addModel [| 2; 3; 6; 6 |])) "no add left"
        }

        test "a [C,1,1] scale then a [1,C,1,1] shift read by get_attr fold in one pass into a Conv2d without bias" {
            let model =
                net [ "conv", conv2d 3 4 1 false 2 ]
                    [ "scale", perChannel scaleOf [| 4; 1; 1 |]; "shift", perChannel shiftOf [| 1; 4; 1; 1 |] ]
                    (fun g x ->
                        let y = g.Function("mul", g.Call("conv", x), g.GetAttr "scale")
                        g.Method("add", y, g.GetAttr "shift"))
            let folded = foldEquivalent "conv * s + t" model [| 2; 3; 5; 5 |]
            Expect.isEmpty (operations folded) "mul, add and their get_attr nodes are gone"
            Expect.equal [ for f in GraphConstantFolding.Find model -> f.Operation, f.ConvPath ] [ "mul", "conv"; "add", "conv" ] "the folds, in order"
            Expect.isTrue ((folded.Children.["conv"] :?> Conv).HasBias) "the shift became a bias"
            Expect.isTrue (obj.ReferenceEquals(folded.State.["scale"], model.State.["scale"])) "the state tensors are kept"
        }

        test "the F# Fuse.foldConstants folds as Fuser.FoldGraphConstants does" {
            let model = net [ "conv", conv2d 3 4 1 true 1 ] [] (fun g x -> g.Function("mul", g.Call("conv", x), 0.5))
            let folded = Fusion.Dsl.FSharp.Fuse.foldConstants model
            Expect.isEmpty (operations folded) "the mul is gone"
            Expect.equal folded (Fuser.FoldGraphConstants model) "same result as the C# entry point"
        }

        test "an add before a mul (constant first, method call) folds as (conv + t) * s" {
            let model =
                net [ "conv", conv2d 3 4 1 true 3 ] [ "shift", perChannel shiftOf [| 4; 1; 1 |] ]
                    (fun g x ->
                        let y = g.Function("add", g.GetAttr "shift", g.Call("conv", x))
                        g.Method("mul", y, -0.6))
            Expect.isEmpty (operations (foldEquivalent "(conv + t) * s" model [| 1; 3; 5; 5 |])) "both folded"
        }

        test "a grouped Conv2d and a grouped ConvTranspose2d take per-channel scale and shift on the right output channels" {
            let grouped =
                net [ "conv", conv2d 4 6 2 true 4 ] [ "s", perChannel scaleOf [| 6; 1; 1 |]; "t", perChannel shiftOf [| 6; 1; 1 |] ]
                    (fun g x -> g.Function("add", g.Function("mul", g.Call("conv", x), g.GetAttr "s"), g.GetAttr "t"))
            foldEquivalent "grouped conv" grouped [| 2; 4; 5; 5 |] |> ignore
            let convT = Conv.Create(2, 4, 6, [| 3 |], stride = [| 2 |], groups = 2, transposed = true, seed = 5) :> Module
            let transposed =
                net [ "up", convT ] [ "s", perChannel scaleOf [| 1; 6; 1; 1 |]; "t", perChannel shiftOf [| 6; 1; 1 |] ]
                    (fun g x -> g.Function("add", g.Function("mul", g.Call("up", x), g.GetAttr "s"), g.GetAttr "t"))
            let folded = foldEquivalent "grouped conv transpose" transposed [| 2; 4; 4; 4 |]
            Expect.isEmpty (operations folded) "both folded"
        }

        test "a fold inside a nested container rewrites only that container; untouched modules are the same objects" {
            let inner = net [ "conv", conv2d 3 3 1 true 6 ] [ "s", perChannel scaleOf [| 3; 1; 1 |] ] (fun g x -> g.Function("mul", g.Call("conv", x), g.GetAttr "s"))
            let other = conv2d 3 3 1 true 7
            let model = net [ "block", inner; "other", other ] [] (fun g x -> g.Call("other", g.Call("block", x)))
            let folded = foldEquivalent "nested" model [| 1; 3; 5; 5 |]
            Expect.isTrue (obj.ReferenceEquals(folded.Children.["other"], other)) "the untouched conv is shared"
            Expect.isTrue (obj.ReferenceEquals((folded :?> UserModule).Forward, (model :?> UserModule).Forward)) "the root graph is kept"
            Expect.isEmpty (operations folded.Children.["block"]) "the inner mul is gone"
            Expect.equal [ for f in GraphConstantFolding.Find model -> f.Container, f.ConvPath ] [ "block", "block.conv" ] "where it folded"
        }

        test "a conv output also read elsewhere, a conv run twice, with a forward hook or whose bias a get_attr reads is left alone" {
            unchanged "other reader"
                (net [ "conv", conv2d 3 3 1 true 1 ] [] (fun g x -> let y = g.Call("conv", x) in g.AddValues(g.Function("mul", y, 2.0), y)))
            unchanged "called twice"
                (net [ "conv", conv2d 3 3 1 true 1 ] [] (fun g x -> g.Function("mul", g.Call("conv", g.Call("conv", x)), 2.0)))
            let hooked = (conv2d 3 3 1 true 1).AddHook(ForwardHook("watch", Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ _ -> null)))
            unchanged "forward hook" (net [ "conv", hooked ] [] (fun g x -> g.Function("mul", g.Call("conv", x), 2.0)))
            unchanged "get_attr of the conv's bias"
                (net [ "conv", conv2d 3 4 1 true 1 ] [] (fun g x ->
                    let y = g.Function("mul", g.Call("conv", x), 2.0)
                    g.AddValues(y, g.Method("reshape", g.GetAttr "conv.bias", [| 1; 4; 1; 1 |]))))
            unchanged "conv times itself" (net [ "conv", conv2d 3 3 1 true 1 ] [] (fun g x -> let y = g.Call("conv", x) in g.Function("mul", y, y)))
        }

        test "a constant that varies spatially, a [C] tensor (it broadcasts along the width), or an int64 tensor is not folded" {
            let withConst (t: Tensor) = net [ "conv", conv2d 3 4 1 true 1 ] [ "c", t ] (fun g x -> g.Function("mul", g.Call("conv", x), g.GetAttr "c"))
            unchanged "[C,1,W]" (withConst (perChannel scaleOf [| 4; 1; 5 |]))
            unchanged "[C]" (withConst (perChannel scaleOf [| 4 |]))
            unchanged "[2,C,1,1]" (withConst (perChannel scaleOf [| 2; 4; 1; 1 |]))
            unchanged "int64" (withConst (Tensor.FromInt64(ReadOnlySpan [| 1L; 2L; 3L; 4L |], 4, 1, 1)))
        }

        test "why a [C] constant is refused: when the width equals C it scales columns, and a per-channel fold would compute something else" {
            let model = net [ "conv", conv2d 3 4 1 true 1 ] [ "c", perChannel scaleOf [| 4 |] ] (fun g x -> g.Function("mul", g.Call("conv", x), g.GetAttr "c"))
            let x = randomTensor (Random 1) [| 1; 3; 4; 4 |]
            let c = model.Children.["conv"] :?> Conv
            let forced = ConstantFolding.FoldScaleShift(c, [| for k in 0 .. 3 -> float (scaleOf k) |], [| 0.0 |])
            let wrong = Forward.Run(forced, x)
            Expect.isGreaterThan (wrong.MaxAbsDiff(Forward.Run(model, x))) 1e-2 "the forced per-channel fold differs"
        }

        test "FoldScaleShift refuses a factor list of the wrong length or a non-finite factor, naming the problem" {
            let c = conv2d 3 4 1 true 1 :?> Conv
            let e = Support.throwsOf<ArgumentException> (fun () -> ConstantFolding.FoldScaleShift(c, [| 1.0; 2.0 |], [| 0.0 |]) |> ignore)
            Expect.stringContains e.Message "out_channels=4" "names the channel count"
            let e = Support.throwsOf<ArgumentException> (fun () -> ConstantFolding.FoldScaleShift(c, [| 1.0 |], [| nan |]) |> ignore)
            Expect.stringContains e.Message "finite" "names the non-finite factor"
            Expect.isTrue (obj.ReferenceEquals(ConstantFolding.FoldScaleShift(c, [| 1.0 |], [| 0.0 |]), c)) "the identity map returns the conv itself"
        }

        test "fuse_modules keeps PyTorch's behaviour: the mul between Conv and ReLU stays in the graph, and the dataflow check refuses by default" {
            let model = net [ "conv", conv2d 3 4 1 true 1; "relu", Activation.Create(ActivationKind.ReLU) ] []
                            (fun g x -> g.Call("relu", g.Function("mul", g.Call("conv", x), 2.0)))
            let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModules(model, [ "conv"; "relu" ]) |> ignore)
            Expect.equal e.Kind FusionErrorKind.UnsafeDataflow "refused by default"
            let forced = Fuser.FuseModules(model, [ "conv"; "relu" ], FuseOptions(AllowUnsafeDataflow = true))
            Expect.equal forced.Children.["conv"].TypeName "ConvReLU2d" "PyTorch's fused kind"
            Expect.isTrue (obj.ReferenceEquals((forced :?> UserModule).Forward, (model :?> UserModule).Forward)) "the graph, mul included, is untouched"
        }
    ]
