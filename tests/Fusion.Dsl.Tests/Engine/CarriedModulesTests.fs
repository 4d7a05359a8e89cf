/// Library modules carried as opaque that the engine computes from their recorded attributes and state, each against
/// its definition in float64; modules and calls it does not compute are refused as unsupported, by type.
module Fusion.Dsl.Tests.Engine.CarriedModulesTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Reference
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.Engine.EngineSupport.GraphNodes


/// An opaque torch.nn module as the exporter records it.
let private carried (typeName: string) (args: (string * objnull) list) (state: (string * Tensor) list) (children: (string * Module) list) (training: bool) =
    OpaqueModule.Create(typeName, "torch.nn", [ for k, v in args -> KeyValuePair(k, v) ], "",
        ModuleChildren.Create([| for n, m in children -> struct (n, m) |]), TensorDict.Create([| for n, t in state -> struct (n, t) |]), training)

let private wide = wideTensor
let private close what actual expected = expectClose what Support.Tol.kernelRel Support.Tol.kernelAbs actual expected

/// vit's encoder block call: `attn(x, x, x, need_weights=...)`, then `[0]` (or `[1]`, the weights).
let private attention (m: Module) (needWeights: bool) (item: int) (x: Tensor) =
    let call = GraphNode(NodeOp.CallModule, "attn", "attn", [], [ for k in [ "query"; "key"; "value" ] -> KeyValuePair(k, r "x") ] @ [ KeyValuePair("need_weights", c needWeights) ])
    let pick = GraphNode(NodeOp.CallFunction, "y", "getitem", [ r "attn"; c (box (int64 item)) ])
    let graph = Graph([ GraphNode(NodeOp.Placeholder, "x"); call; pick; GraphNode(NodeOp.Output, "output", args = [ r "y" ]) ])
    Forward.Run(UserModule.Create("Block", ModuleChildren.Create(struct ("attn", m)), graph), x)

/// A MultiheadAttention of embed_dim e and the given heads, with its out_proj child, from seeded weights.
let private multihead (e: int) (heads: int) (batchFirst: bool) =
    let inW, inB, outW, outB = wide 1 [| 3 * e; e |], wide 2 [| 3 * e |], wide 3 [| e; e |], wide 4 [| e |]
    let scaled (t: Tensor) = NaiveReference.Map(t, fun v -> v / 8.0) // keep the scores in softmax's sensitive range
    let inW, outW = scaled inW, scaled outW
    let outProj =
        OpaqueModule.Create("NonDynamicallyQuantizableLinear", "torch.nn.modules.linear", [ KeyValuePair("in_features", box (int64 e)); KeyValuePair("out_features", box (int64 e)) ],
            state = TensorDict.Create(struct ("weight", outW), struct ("bias", outB)))
    let m =
        carried "MultiheadAttention"
            [ "embed_dim", box (int64 e); "num_heads", box (int64 heads); "kdim", box (int64 e); "vdim", box (int64 e); "batch_first", box batchFirst
              "dropout", box 0.0; "add_zero_attn", box false; "bias_k", null; "bias_v", null ]
            [ "in_proj_weight", inW; "in_proj_bias", inB ] [ "out_proj", outProj :> Module ] false
    m, (inW, inB, outW, outB)

[<Tests>]
let tests =
    testList "Engine.CarriedModules" [
        test "Sigmoid, GELU, Hardtanh, Softmax, Tanh, LeakyReLU and ELU compute their formulas from their recorded arguments" {
            let x = wide 5 [| 2; 3; 4; 5 |]
            close "Sigmoid" (Forward.Run(carried "Sigmoid" [] [] [] false, x)) (NaiveReference.Map(x, fun v -> NaiveReference.Sigmoid v))
            close "GELU()" (Forward.Run(carried "GELU" [ "approximate", box "none" ] [] [] false, x)) (NaiveReference.Map(x, fun v -> NaiveReference.Gelu(v, false)))
            close "GELU('tanh')" (Forward.Run(carried "GELU" [ "approximate", box "tanh" ] [] [] false, x)) (NaiveReference.Map(x, fun v -> NaiveReference.Gelu(v, true)))
            close "Hardtanh(-2, 1)" (Forward.Run(carried "Hardtanh" [ "min_val", box -2.0; "max_val", box 1.0; "inplace", box false ] [] [] false, x)) (NaiveReference.Map(x, fun v -> Math.Clamp(v, -2.0, 1.0)))
            close "Softmax(dim=1)" (Forward.Run(carried "Softmax" [ "dim", box 1L ] [] [] false, x)) (NaiveReference.Softmax(x, 1))
            close "Tanh" (Forward.Run(carried "Tanh" [] [] [] false, x)) (NaiveReference.Map(x, fun v -> Math.Tanh v))
            close "LeakyReLU(0.2)" (Forward.Run(carried "LeakyReLU" [ "negative_slope", box 0.2; "inplace", box false ] [] [] false, x)) (NaiveReference.Map(x, fun v -> if v > 0.0 then v else 0.2 * v))
            close "ELU(0.7)" (Forward.Run(carried "ELU" [ "alpha", box 0.7; "inplace", box false ] [] [] false, x)) (NaiveReference.Map(x, fun v -> if v > 0.0 then v else 0.7 * (Math.Exp v - 1.0)))
        }
        test "PReLU multiplies negative inputs by its one weight, or by its channel's (dimension 1), and refuses a weight count other than the channels" {
            let x = wide 5 [| 2; 3; 4; 5 |]
            let one = Tensor.FromFloat32(ReadOnlySpan [| 0.25f |], 1)
            close "PReLU()" (Forward.Run(carried "PReLU" [ "num_parameters", box 1L ] [ "weight", one ] [] false, x)) (NaiveReference.Map(x, fun v -> if v > 0.0 then v else float 0.25f * v))
            let w = Tensor.FromFloat32(ReadOnlySpan [| 0.1f; -0.5f; 2.0f |], 3)
            let perChannel = carried "PReLU" [ "num_parameters", box 3L ] [ "weight", w ] [] false
            let xs, ys = x.ToArray(), Forward.Run(perChannel, x).ToArray()
            for i in 0 .. xs.Length - 1 do
                let slope = [| 0.1f; -0.5f; 2.0f |].[i / 20 % 3]
                Expect.equal ys.[i] (if xs.[i] > 0.0f then xs.[i] else xs.[i] * slope) "PyTorch's x·w[c], bit for bit"
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(perChannel, wide 9 [| 2; 4; 5 |]) |> ignore)
            Expect.stringContains e.Message "PReLU has 3 parameters, one per channel, but its input [2, 4, 5] has 4 channels" "the mismatch is named"
            Expect.isFalse e.Unsupported "a wrong input, not an unsupported module"
        }
        test "Upsample, UpsamplingNearest2d and UpsamplingBilinear2d interpolate as F.interpolate does; other modes are unsupported, both size and scale_factor refused" {
            let x = Tensor.FromFloat32(ReadOnlySpan [| 1.0f; 2.0f; 3.0f; 4.0f |], 1, 1, 2, 2)
            let nearest = carried "Upsample" [ "size", null; "scale_factor", box 2.0; "mode", box "nearest"; "align_corners", null; "recompute_scale_factor", null ] [] [] false
            Expect.equal (Forward.Run(nearest, x).ToArray()) [| 1.0f; 1.0f; 2.0f; 2.0f; 1.0f; 1.0f; 2.0f; 2.0f; 3.0f; 3.0f; 4.0f; 4.0f; 3.0f; 3.0f; 4.0f; 4.0f |] "each value repeated 2x2"
            let sized = carried "UpsamplingNearest2d" [ "size", box [ box 3L; box 1L ]; "scale_factor", null; "mode", box "nearest"; "align_corners", null; "recompute_scale_factor", null ] [] [] false
            Expect.equal (Forward.Run(sized, x).ToArray()) [| 1.0f; 1.0f; 3.0f |] "size (3, 1): rows floor(o·2/3), column 0"
            let bilinear = carried "UpsamplingBilinear2d" [ "size", null; "scale_factor", box 1.5; "mode", box "bilinear"; "align_corners", box true; "recompute_scale_factor", null ] [] [] false
            Expect.equal (Forward.Run(bilinear, x).ToArray()) [| 1.0f; 1.5f; 2.0f; 2.0f; 2.5f; 3.0f; 3.0f; 3.5f; 4.0f |] "align_corners: the corners kept, the midpoints averaged"
            let halfPixel = carried "Upsample" [ "size", box [ box 2L; box 4L ]; "scale_factor", null; "mode", box "bilinear"; "align_corners", box false; "recompute_scale_factor", null ] [] [] false
            Expect.equal (Forward.Run(halfPixel, x).ToArray()) [| 1.0f; 1.25f; 1.75f; 2.0f; 3.0f; 3.25f; 3.75f; 4.0f |] "half-pixel centres, clamped at the edges"
            let bicubic = carried "Upsample" [ "size", null; "scale_factor", box 2.0; "mode", box "bicubic"; "align_corners", box false; "recompute_scale_factor", null ] [] [] false
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(bicubic, x) |> ignore)
            Expect.stringContains e.Message "mode 'bicubic' is not supported here" "the mode is named"
            Expect.isTrue e.Unsupported "an unsupported mode, not a wrong input"
            let both = carried "Upsample" [ "size", box 4L; "scale_factor", box 2.0; "mode", box "nearest"; "align_corners", null; "recompute_scale_factor", null ] [] [] false
            Expect.stringContains (Support.throwsOf<ForwardException> (fun () -> Forward.Run(both, x) |> ignore)).Message "only one of size or scale_factor should be defined" "PyTorch's message"
        }
        test "LayerNorm reads normalized_shape, eps and its weight and bias; in a Sequential too" {
            let x = wide 6 [| 2; 5; 5; 8 |]
            let w, b = wide 7 [| 8 |], wide 8 [| 8 |]
            let norm = carried "LayerNorm" [ "normalized_shape", box [| box 8L |]; "eps", box 1e-6; "elementwise_affine", box true ] [ "weight", w; "bias", b ] [] false
            close "LayerNorm(8)" (Forward.Run(norm, x)) (NaiveReference.LayerNorm(x, 1, w, b, 1e-6))
            let seq = Sequential.Create([| norm :> Module; carried "GELU" [ "approximate", box "none" ] [] [] false |])
            close "Sequential(LayerNorm, GELU)" (Forward.Run(seq, x)) (NaiveReference.Map(NaiveReference.LayerNorm(x, 1, w, b, 1e-6), fun v -> NaiveReference.Gelu(v, false)))
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(norm, wide 9 [| 2; 8; 5 |]) |> ignore)
            Expect.stringContains e.Message "normalized_shape [8]" "the mismatch is named"
            Expect.isFalse e.Unsupported "a wrong input, not an unsupported module"
        }
        test "GroupNorm normalises each group of channels as LayerNorm normalises the group's elements, and refuses groups that do not divide the channels; InstanceNorm is one group per channel, running statistics unsupported" {
            let x = wide 11 [| 2; 6; 3; 4 |]
            let gn = carried "GroupNorm" [ "num_groups", box 3L; "num_channels", box 6L; "eps", box 1e-5; "affine", box false ] [] [] false
            let grouped = NaiveReference.LayerNorm(Tensor.FromFloat32(ReadOnlySpan(x.ToArray()), 2, 3, 24), 1, null, null, 1e-5)
            close "GroupNorm(3, 6)" (Forward.Run(gn, x)) (Tensor.FromFloat32(ReadOnlySpan(grouped.ToArray()), 2, 6, 3, 4))
            let bad = carried "GroupNorm" [ "num_groups", box 4L; "num_channels", box 6L; "eps", box 1e-5; "affine", box false ] [] [] false
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(bad, x) |> ignore)
            Expect.stringContains e.Message "num_groups (4) must divide the 6 channels" "the mismatch is named"
            let inorm = carried "InstanceNorm2d" [ "num_features", box 6L; "eps", box 1e-5; "affine", box false; "track_running_stats", box false ] [] [] false
            let perChannel = carried "GroupNorm" [ "num_groups", box 6L; "num_channels", box 6L; "eps", box 1e-5; "affine", box false ] [] [] false
            close "InstanceNorm2d(6) is GroupNorm(6, 6)" (Forward.Run(inorm, x)) (Forward.Run(perChannel, x))
            let tracked = carried "InstanceNorm2d" [ "num_features", box 6L; "eps", box 1e-5; "affine", box false; "track_running_stats", box true ] [] [] false
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(tracked, x) |> ignore)
            Expect.isTrue e.Unsupported "running statistics are not computed"
        }
        test "the Dropout variants are the identity in eval and refused as unsupported in training" {
            let x = wide 10 [| 2; 3; 4; 4 |]
            expectSameBits "Dropout2d eval" (Forward.Run(carried "Dropout2d" [ "p", box 0.3; "inplace", box false ] [] [] false, x)) x
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(carried "Dropout2d" [ "p", box 0.3; "inplace", box false ] [] [] true, x) |> ignore)
            Expect.isTrue e.Unsupported "random in PyTorch"
            Expect.stringContains e.Message "training" "says why"
        }
        test "MultiheadAttention (vit's call: query = key = value, need_weights=False) is softmax(q·kᵀ/√d)·v through both projections" {
            let m, (inW, inB, outW, outB) = multihead 12 3 true
            let x = wide 11 [| 2; 5; 12 |]
            let expected = NaiveReference.SelfAttention(x, 3, inW, inB, outW, outB)
            close "batch_first" (attention m false 0 x) expected
            // Sequence-first layout: [L, N, E] in and out.
            let m2, _ = multihead 12 3 false
            let xt = NaiveReference.Permute(x, [| 1; 0; 2 |])
            close "batch_first=False" (attention m2 false 0 xt) (NaiveReference.Permute(expected, [| 1; 0; 2 |]))
            // need_weights=True: the weights averaged over the heads, each row a distribution.
            let w = attention m true 1 x
            Expect.sequenceEqual w.Dimensions [ 2; 5; 5 ] "[N, L, S]"
            for row in Array.chunkBySize 5 (w.ToArray()) do
                Expect.floatClose Accuracy.medium (float (Array.sum row)) 1.0 "a row sums to one"
        }
        test "a module without an evaluator, and attention with a mask, are refused as unsupported by type" {
            let x = wide 12 [| 2; 5; 12 |]
            let e = Support.throwsOf<ForwardException> (fun () -> Forward.Run(carried "Softsign" [] [] [] false, x) |> ignore)
            Expect.isTrue e.Unsupported "marked unsupported"
            Expect.stringContains e.Message "torch.nn.Softsign" "names the type"
            let m, _ = multihead 12 3 true
            let call = GraphNode(NodeOp.CallModule, "attn", "attn", [ r "x"; r "x"; r "x" ], [ KeyValuePair("attn_mask", r "x") ])
            let graph = Graph([ GraphNode(NodeOp.Placeholder, "x"); call; GraphNode(NodeOp.CallFunction, "y", "getitem", [ r "attn"; c (box 0L) ]); GraphNode(NodeOp.Output, "output", args = [ r "y" ]) ])
            let e2 = Support.throwsOf<ForwardException> (fun () -> Forward.Run(UserModule.Create("Block", ModuleChildren.Create(struct ("attn", m :> Module)), graph), x) |> ignore)
            Expect.isTrue e2.Unsupported "masks are not modelled"
            Expect.stringContains e2.Message "attn_mask" "names the argument"
            let e3 = Support.throwsOf<ForwardException> (fun () -> attention m false 0 (wide 13 [| 2; 5; 10 |]) |> ignore)
            Expect.stringContains e3.Message "[N, L, 12]" "the expected layout is named"
            Expect.isFalse e3.Unsupported "a wrong input"
        }
    ]
