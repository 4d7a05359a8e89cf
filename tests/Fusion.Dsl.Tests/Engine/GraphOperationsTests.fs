/// The graph operations torchvision's networks trace to, each against its defining formula in float64
/// (NaiveReference), with PyTorch's argument conventions; and the refusals of inputs they cannot take.
module Fusion.Dsl.Tests.Engine.GraphOperationsTests

open System
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

let private i64 (v: int) = c (box (int64 v))
let private slice (start: int64 option) (stop: int64 option) (step: int64 option) =
    c (box (PyConstant.Slice(Option.toNullable start, Option.toNullable stop, Option.toNullable step)))
let private all = slice None None None
let private ellipsis = c (box (PyConstant(PyConstantKind.Ellipsis)))
let private attr (name: string) = GraphNode(NodeOp.GetAttr, name, name)

/// Runs a one-input graph over a container holding `state` (read by get_attr nodes).
let private runWith (state: (string * Tensor) list) (nodes: GraphNode list) (x: Tensor) =
    let dict = TensorDict.Create([| for n, t in state -> struct (n, t) |])
    Forward.Run(UserModule.Create("Net", ModuleChildren.Empty, Graph(input :: nodes), state = dict), x)

let private run nodes x = runWith [] nodes x

/// One call `y = node` on x, returned.
let private one (node: GraphNode) (x: Tensor) = run [ node; output node.Name ] x

let private wide = wideTensor
let private close what actual expected = expectClose what Support.Tol.kernelRel Support.Tol.kernelAbs actual expected

/// The refusal of running `nodes` on x: a ForwardException whose message names `parts`.
let private refuses (nodes: GraphNode list) (x: Tensor) (parts: string list) =
    let e = Support.throwsOf<ForwardException> (fun () -> run nodes x |> ignore)
    for p in parts do Expect.stringContains e.Message p $"the message names {p}"
    e

/// GELU's relative error per element: the erfc fit's 1.2e-7 and about a dozen float32 roundings, of which the one that
/// grows is the exponential's argument −x²/2, carried to a few of its ulps (about 4e-6 relative at x = −6, where the
/// argument is 18; 2e-5 at x = −13, where it is 85 and the result 1e-37). A lost tail is off by 1.
module private GeluTol =
    /// Where networks' activations live.
    let bulkRel = 5e-6
    /// Out to x = −13, where the result is 1e-37 and PyTorch's own float32 form gives 0.
    let tailRel = 3e-5

/// Softmax per element: the float32 exponential (one ulp) of x − max rounded in float32 (a few ulps of |x − max|, up to
/// 24 here), the float64 sum, the float32 reciprocal and the product: a few 1e-7 relative; a wrong maximum or sum is off
/// by far more.
module private SoftmaxTol =
    let rel = 4e-6
    let abs = 1e-12

[<Tests>]
let tests =
    testList "Engine.GraphOperations" [
        test "sigmoid, gelu in both forms, relu6 and hardtanh match their formulas" {
            let x = wide 1 [| 2; 3; 5; 7 |]
            close "torch.sigmoid" (one (fn "y" "sigmoid" [ r "x" ] []) x) (NaiveReference.Map(x, fun v -> NaiveReference.Sigmoid v))
            close "x.sigmoid()" (one (meth "y" "sigmoid" [ r "x" ] []) x) (NaiveReference.Map(x, fun v -> NaiveReference.Sigmoid v))
            close "gelu" (one (fn "y" "gelu" [ r "x" ] []) x) (NaiveReference.Map(x, fun v -> NaiveReference.Gelu(v, false)))
            close "gelu tanh" (one (fn "y" "gelu" [ r "x" ] [ "approximate", c "tanh" ]) x) (NaiveReference.Map(x, fun v -> NaiveReference.Gelu(v, true)))
            close "relu6" (one (fn "y" "relu6" [ r "x" ] []) x) (NaiveReference.Activation(ActivationKind.ReLU6, x))
            close "hardtanh" (one (fn "y" "hardtanh" [ r "x"; c (box -0.5); c (box 2L) ] []) x) (NaiveReference.Map(x, fun v -> Math.Clamp(v, -0.5, 2.0)))
        }
        test "gelu keeps every element's relative accuracy, the negative tail included, from -13 to 13" {
            // 2^16 + 7 points: float32 GELU through erfc (its fit's fractional error is 1.2e-7) against the definition in
            // float64 through MathNet's erfc; a form that computed 1 + erf for x < 0 would lose the tail entirely.
            let n = 65543
            let x = Tensor.FromFloat32(Array.init n (fun i -> float32 (-13.0 + 26.0 * float i / float (n - 1))), [| n |])
            let y = one (fn "y" "gelu" [ r "x" ] []) x
            let worst (inside: float -> bool) =
                seq { for i in 0 .. n - 1 do
                        let expected = float32 (NaiveReference.Gelu(x.[i], false))
                        if expected <> 0f && inside x.[i] then yield abs (y.[i] - float expected) / abs (float expected), x.[i] }
                |> Seq.maxBy fst
            let bulk, bulkAt = worst (fun v -> abs v <= 6.0)
            Expect.isLessThanOrEqual bulk GeluTol.bulkRel $"|x| <= 6: worst relative error {bulk} at x = {bulkAt}"
            let tail, tailAt = worst (fun _ -> true)
            Expect.isLessThanOrEqual tail GeluTol.tailRel $"|x| <= 13: worst relative error {tail} at x = {tailAt}"
        }
        test "gelu gives an element the same bits wherever it stands (vector body or padded tail), and PyTorch's special values" {
            // 37 values: more than two vectors of any width, so the last ones land in a padded tail.
            let values = wide 3 [| 37 |]
            let y = one (fn "y" "gelu" [ r "x" ] []) values
            for shift in [ 1; 5; 16 ] do
                let moved = Tensor.FromFloat32(Array.init (37 + shift) (fun i -> if i < shift then 0f else float32 values.[i - shift]), [| 37 + shift |])
                let ym = one (fn "y" "gelu" [ r "x" ] []) moved
                for i in 0 .. 36 do
                    Expect.equal (BitConverter.SingleToInt32Bits(float32 ym.[i + shift])) (BitConverter.SingleToInt32Bits(float32 y.[i])) $"element {i} moved by {shift}"
            // torch.nn.functional.gelu(torch.tensor([nan, inf, -inf, 3.0])) in PyTorch 1.13: [nan, inf, nan, 2.995950222015381].
            let special = one (fn "y" "gelu" [ r "x" ] []) (Tensor.FromFloat32([| Single.NaN; Single.PositiveInfinity; Single.NegativeInfinity; 3f |], [| 4 |]))
            Expect.isTrue (Double.IsNaN special.[0]) "gelu(nan) is nan"
            Expect.equal special.[1] Double.PositiveInfinity "gelu(inf) is inf"
            Expect.isTrue (Double.IsNaN special.[2]) "gelu(-inf) is nan, as PyTorch's x·Φ(x) gives"
            Expect.isLessThanOrEqual (abs (special.[3] - 2.995950222015381)) (Support.Tol.kernelAbs + Support.Tol.kernelRel * 3.0) "gelu(3)"
        }
        test "softmax over the last axis: rows of every length around the vector width, each element within its own tolerance" {
            // Lengths 1-40, 197 (vit_b_16's tokens) and 1000: whole vectors, tails, and rows shorter than one vector.
            for len in [ 1 .. 40 ] @ [ 197; 1000 ] do
                let x = Tensor.FromFloat32(Array.init (3 * len) (fun i -> float32 (Math.Sin(float i * 1.7) * 12.0)), [| 3; len |])
                let y = one (fn "y" "softmax" [ r "x" ] [ "dim", i64 -1 ]) x
                let expected = NaiveReference.Softmax(x, 1)
                for i in 0 .. 3 * len - 1 do
                    Expect.isLessThanOrEqual (abs (y.[i] - expected.[i])) (SoftmaxTol.rel * expected.[i] + SoftmaxTol.abs) $"length {len}, element {i}"
        }
        test "softmax keeps PyTorch's special values: an all -inf row and one with +inf or NaN give NaN, -inf gives 0, large values shift" {
            // torch.softmax(torch.tensor([[-inf, -inf], [0, -inf], [inf, 0], [nan, 1], [1e4, 1e4 - 3]]), -1) in PyTorch 1.13:
            // [[nan, nan], [1, 0], [nan, nan], [nan, nan], [0.9526, 0.0474]].
            let inf = Single.PositiveInfinity
            let x = Tensor.FromFloat32([| -inf; -inf; 0f; -inf; inf; 0f; Single.NaN; 1f; 1e4f; 1e4f - 3f |], [| 5; 2 |])
            let y = one (fn "y" "softmax" [ r "x" ] [ "dim", i64 -1 ]) x
            for i in [ 0; 1; 4; 5; 6; 7 ] do Expect.isTrue (Double.IsNaN y.[i]) $"element {i} is NaN"
            Expect.equal y.[2] 1.0 "exp(0) / exp(0)"
            Expect.equal y.[3] 0.0 "exp(-inf) is 0"
            Expect.isLessThanOrEqual (abs (y.[8] - 1.0 / (1.0 + Math.Exp -3.0))) 1e-6 "shifted by the maximum"
        }
        test "softmax and mean reduce the dimensions PyTorch names, keepdim or not" {
            let x = wide 2 [| 2; 3; 4; 5 |]
            close "softmax(x, -1)" (one (fn "y" "softmax" [ r "x" ] [ "dim", i64 -1 ]) x) (NaiveReference.Softmax(x, 3))
            close "x.softmax(1)" (one (meth "y" "softmax" [ r "x"; i64 1 ] []) x) (NaiveReference.Softmax(x, 1))
            close "x.mean([2, 3])" (one (meth "y" "mean" [ r "x"; ints [ 2; 3 ] ] []) x) (NaiveReference.Mean(x, [| 2; 3 |], false))
            close "keepdim" (one (meth "y" "mean" [ r "x"; ints [ -1; 1 ] ] [ "keepdim", c true ]) x) (NaiveReference.Mean(x, [| 3; 1 |], true))
            close "torch.mean(x)" (one (fn "y" "mean" [ r "x" ] []) x) (NaiveReference.Mean(x, [| 0; 1; 2; 3 |], false))
            close "mean(x, 0)" (one (fn "y" "mean" [ r "x"; i64 0 ] []) x) (NaiveReference.Mean(x, [| 0 |], false))
        }
        test "layer_norm normalises the trailing dimensions, with and without weight and bias" {
            let x = wide 3 [| 2; 3; 4; 6 |]
            let w, b = wide 4 [| 4; 6 |], wide 5 [| 4; 6 |]
            let y = runWith [ "w", w; "b", b ] [ attr "w"; attr "b"; fn "y" "layer_norm" [ r "x"; ints [ 4; 6 ] ] [ "weight", r "w"; "bias", r "b"; "eps", c (box 1e-3) ]; output "y" ] x
            close "affine" y (NaiveReference.LayerNorm(x, 2, w, b, 1e-3))
            close "plain" (one (fn "y" "layer_norm" [ r "x"; ints [ 6 ] ] []) x) (NaiveReference.LayerNorm(x, 1, null, null, 1e-5))
        }
        test "permute, transpose and expand give the layout PyTorch's views read, as new tensors" {
            let x = wide 6 [| 2; 3; 4; 5 |]
            expectSameBits "x.permute(0, 2, 3, 1)" (one (meth "y" "permute" [ r "x"; i64 0; i64 2; i64 3; i64 1 ] []) x) (NaiveReference.Permute(x, [| 0; 2; 3; 1 |]))
            expectSameBits "torch.permute(x, [3, 1, 0, 2])" (one (fn "y" "permute" [ r "x"; ints [ 3; 1; 0; 2 ] ] []) x) (NaiveReference.Permute(x, [| 3; 1; 0; 2 |]))
            expectSameBits "transpose(1, -1)" (one (fn "y" "transpose" [ r "x"; i64 1; i64 -1 ] []) x) (NaiveReference.Permute(x, [| 0; 3; 2; 1 |]))
            let t = wide 7 [| 1; 3; 1 |]
            let e = one (meth "y" "expand" [ r "x"; i64 2; i64 -1; i64 -1; i64 4 ] []) t
            Expect.sequenceEqual e.Dimensions [ 2; 1; 3; 4 ] "a new leading dimension, -1 keeps, 1 stretches"
            let ts, es = t.ToArray(), e.ToArray()
            for k in 0 .. es.Length - 1 do
                Expect.equal es.[k] ts.[(k / 4) % 3] $"element {k} reads t[0, {(k / 4) % 3}, 0]"
        }
        test "getitem indexes tensors with integers, slices and Ellipsis, and tuples with integers" {
            let x = wide 8 [| 2; 5; 4 |]
            let index (items: GraphArg list) = one (fn "y" "getitem" [ r "x"; GraphArg.List(Array.ofList items) ] []) x
            expectSameBits "x[:, 0]" (index [ all; i64 0 ]) (NaiveReference.Slice(x, [| 0; 0; 0 |], [| 2; 1; 4 |], [| 1; 1; 1 |], [| 1 |]))
            expectSameBits "x[..., 1::2]" (index [ ellipsis; slice (Some 1L) None (Some 2L) ]) (NaiveReference.Slice(x, [| 0; 0; 1 |], [| 2; 5; 2 |], [| 1; 1; 2 |], [||]))
            expectSameBits "x[-1, -3:]" (index [ i64 -1; slice (Some -3L) None None ]) (NaiveReference.Slice(x, [| 1; 2; 0 |], [| 1; 3; 4 |], [| 1; 1; 1 |], [| 0 |]))
            expectSameBits "x[1]" (one (fn "y" "getitem" [ r "x"; i64 1 ] []) x) (NaiveReference.Slice(x, [| 1; 0; 0 |], [| 1; 5; 4 |], [| 1; 1; 1 |], [| 0 |]))
            // vit's x.shape[0] and x.shape[-1], reshaped by: tuple indexing gives Python ints.
            let y = run [ fn "s" "getattr" [ r "x"; c "shape" ] []; fn "n" "getitem" [ r "s"; i64 0 ] []; fn "w" "getitem" [ r "s"; i64 -1 ] []
                          meth "y" "reshape" [ r "x"; r "n"; i64 -1; r "w" ] []; output "y" ] x
            Expect.sequenceEqual y.Dimensions [ 2; 5; 4 ] "the shape read back"
        }
        test "shufflenet's channel shuffle: size, floordiv, view, transpose, contiguous" {
            let x = wide 9 [| 2; 6; 3; 3 |]
            let y =
                run [ meth "size" "size" [ r "x" ] []
                      fn "n" "getitem" [ r "size"; i64 0 ] []; fn "ch" "getitem" [ r "size"; i64 1 ] []
                      fn "h" "getitem" [ r "size"; i64 2 ] []; fn "w" "getitem" [ r "size"; i64 3 ] []
                      fn "half" "floordiv" [ r "ch"; i64 2 ] []
                      meth "v" "view" [ r "x"; r "n"; i64 2; r "half"; r "h"; r "w" ] []
                      fn "t" "transpose" [ r "v"; i64 1; i64 2 ] []
                      meth "cc" "contiguous" [ r "t" ] []
                      meth "y" "view" [ r "cc"; r "n"; i64 -1; r "h"; r "w" ] []
                      output "y" ] x
            let expected = NaiveReference.Permute(x.Reshape(2, 2, 3, 3, 3), [| 0; 2; 1; 3; 4 |]).Reshape(2, 6, 3, 3)
            expectSameBits "channels interleaved" y expected
            let d = run [ meth "d" "dim" [ r "x" ] []; meth "s1" "size" [ r "x"; i64 -1 ] []; fn "m" "mul" [ r "d"; r "s1" ] []
                          fn "q" "sub" [ r "m"; i64 10 ] []; meth "y" "view" [ r "x"; i64 -1; r "q" ] []; output "y" ] x
            Expect.sequenceEqual d.Dimensions [ 54; 2 ] "dim() * size(-1) - 10 = 4 * 3 - 10, computed on Python ints"
        }
        test "einsum computes maxvit's two attention products and a permutation as their defining sums" {
            let q, k = wide 21 [| 2; 3; 2; 4; 5 |], wide 22 [| 2; 3; 2; 6; 5 |]
            let scores = "B G H I D, B G H J D -> B G H I J"
            let y = runWith [ "k", k ] [ attr "k"; fn "y" "einsum" [ c scores; r "x"; r "k" ] []; output "y" ] q
            close scores y (NaiveReference.Einsum(scores, q, k))
            let v = wide 23 [| 2; 3; 2; 6; 5 |]
            let p = wide 24 [| 2; 3; 2; 4; 6 |]
            let mix = "B G H I J, B G H J D -> B G H I D"
            close mix (runWith [ "v", v ] [ attr "v"; fn "y" "einsum" [ c mix; GraphArg.List([| r "x"; r "v" |]) ] []; output "y" ] p) (NaiveReference.Einsum(mix, p, v))
            // The output's letters in another order than the product's, and a contraction over two letters.
            let a, b = wide 25 [| 3; 4; 5 |], wide 26 [| 5; 4; 2 |]
            close "ikj,jkl->li" (runWith [ "b", b ] [ attr "b"; fn "y" "einsum" [ c "ikj,jkl->li"; r "x"; r "b" ] []; output "y" ] a) (NaiveReference.Einsum("ikj,jkl->li", a, b))
            expectSameBits "ijk->kij" (one (fn "y" "einsum" [ c "ijk->kij"; r "x" ] []) a) (NaiveReference.Permute(a, [| 2; 0; 1 |]))
            // An empty dimension gives an empty result, as in PyTorch; an empty contraction gives zeros.
            let empty = runWith [ "b", wide 31 [| 3; 2 |] ] [ attr "b"; fn "y" "einsum" [ c "ij,jk->ik"; r "x"; r "b" ] []; output "y" ] (Tensor.Zeros(0, 3))
            Expect.sequenceEqual empty.Dimensions [ 0; 2 ] "[0, 3] x [3, 2] -> [0, 2]"
            let zeros = runWith [ "b", Tensor.Zeros(0, 2) ] [ attr "b"; fn "y" "einsum" [ c "ij,jk->ik"; r "x"; r "b" ] []; output "y" ] (Tensor.Zeros(4, 0))
            Expect.sequenceEqual (zeros.ToArray()) (Array.zeroCreate<float32> 8) "a sum over nothing is 0"
        }
        test "einsum refuses the forms it does not compute and equations that do not fit, naming the equation" {
            let x = wide 27 [| 3; 3 |]
            let refusal equation unsupported =
                let e = refuses [ fn "y" "einsum" [ c equation; r "x"; r "x" ] []; output "y" ] x [ $"einsum '{equation}'" ]
                Expect.equal e.Unsupported unsupported $"{equation}: unsupported form or wrong input"
            refusal "...i,...i->...i" true
            refusal "ii,ij->j" true
            refusal "ij,jk->k" true // i summed out of the first operand alone
            refusal "ijk,jk->ik" false // three subscripts for a matrix
            refusal "ij,kl->m" false
            let e = Support.throwsOf<ForwardException> (fun () ->
                runWith [ "w", wide 28 [| 4; 2 |] ] [ attr "w"; fn "y" "einsum" [ c "ij,jk->ik"; r "x"; r "w" ] []; output "y" ] x |> ignore)
            Expect.stringContains e.Message "'j' is 3 in one place and 4 in another" "sizes that disagree are named"
        }
        test "a tensor constant builds its values, and a table indexed by an int64 tensor gathers rows (maxvit's bias lookup)" {
            let table = wide 29 [| 7; 3 |]
            let data = GraphArg.List([| for v in [ 6L; 0L; -1L; 2L; 2L; 5L ] -> c (box v) |])
            let i64dtype = c (box (PyConstant(PyConstantKind.DType, "torch.int64")))
            let y = run [ fn "idx" "tensor" [ data ] [ "dtype", i64dtype ]; fn "y" "getitem" [ r "x"; r "idx" ] []; output "y" ] table
            Expect.sequenceEqual y.Dimensions [ 6; 3 ] "idx.shape + table.shape[1:]"
            let rows = table.ToArray() |> Array.chunkBySize 3
            Expect.sequenceEqual (y.ToArray()) (Array.concat [ for i in [ 6; 0; 6; 2; 2; 5 ] -> rows.[i] ]) "row i of the result is table[idx[i]] (-1 is the last)"
            let nested = GraphArg.List([| GraphArg.List([| c (box 1.5); c (box 2L) |]); GraphArg.List([| c (box -3.0); c (box 0.25) |]) |])
            let f = run [ fn "t" "tensor" [ nested ] []; fn "y" "add" [ r "x"; r "t" ] []; output "y" ] (Tensor.Zeros(2, 2))
            Expect.sequenceEqual (f.ToArray()) [| 1.5f; 2f; -3f; 0.25f |] "float32 by default; nesting gives the shape"
            refuses [ fn "idx" "tensor" [ GraphArg.List([| c (box 9L) |]) ] [ "dtype", i64dtype ]; fn "y" "getitem" [ r "x"; r "idx" ] []; output "y" ] table [ "index 9"; "size 7" ] |> ignore
            refuses [ fn "t" "tensor" [ GraphArg.List([| GraphArg.List([| c (box 1L) |]); c (box 2L) |]) ] [ "dtype", i64dtype ]; output "t" ] table [ "ragged" ] |> ignore
            refuses [ fn "idx" "tensor" [ data ] [ "dtype", i64dtype ]; fn "y" "getitem" [ r "x"; r "idx" ] []; output "y" ] (Tensor.Zeros(0, 3)) [ "out of range"; "size 0" ] |> ignore
            let e = refuses [ fn "t" "tensor" [ data ] [ "dtype", c (box (PyConstant(PyConstantKind.DType, "torch.bool"))) ]; output "t" ] table [ "torch.bool" ]
            Expect.isTrue e.Unsupported "a dtype the engine does not compute is unsupported, not wrong"
        }
        test "swapaxes is transpose under NumPy's name, as a function and a method" {
            let x = wide 30 [| 2; 3; 4; 5 |]
            expectSameBits "torch.swapaxes(x, -2, -3)" (one (fn "y" "swapaxes" [ r "x"; i64 -2; i64 -3 ] []) x) (NaiveReference.Permute(x, [| 0; 2; 1; 3 |]))
            expectSameBits "x.swapaxes(0, 3)" (one (meth "y" "swapaxes" [ r "x"; i64 0; i64 3 ] []) x) (NaiveReference.Permute(x, [| 3; 1; 2; 0 |]))
        }
        test "chunk and split cut along a dimension, and every piece stays readable while the tuple lives" {
            let x = wide 10 [| 2; 7; 40; 40 |] // pieces large enough to come from, and go back to, the buffer pool
            let piece (start: int) (count: int) = NaiveReference.Slice(x, [| 0; start; 0; 0 |], [| 2; count; 40; 40 |], [| 1; 1; 1; 1 |], [||])
            let chunks = [ meth "p" "chunk" [ r "x"; i64 3 ] [ "dim", i64 1 ] ]
            for k, (start, count) in List.indexed [ 0, 3; 3, 3; 6, 1 ] do
                expectSameBits $"chunk {k}" (run (chunks @ [ fn "y" "getitem" [ r "p"; i64 k ] []; output "y" ]) x) (piece start count)
            let sections = [ fn "p" "split" [ r "x"; ints [ 2; 5 ]; i64 1 ] [] ]
            expectSameBits "split [2, 5], second" (run (sections @ [ fn "y" "getitem" [ r "p"; i64 1 ] []; output "y" ]) x) (piece 2 5)
            expectSameBits "split(4), last" (run [ meth "p" "split" [ r "x"; i64 4 ] [ "dim", i64 1 ]; fn "y" "getitem" [ r "p"; i64 -1 ] []; output "y" ] x) (piece 4 3)
            // The first piece is read, dies as a value, then read again from the tuple after other buffers were made.
            let again =
                run [ meth "p" "chunk" [ r "x"; i64 3; i64 1 ] []
                      fn "a" "getitem" [ r "p"; i64 0 ] []; fn "ra" "relu" [ r "a" ] []
                      fn "b" "getitem" [ r "p"; i64 1 ] []; fn "rb" "relu" [ r "b" ] []; fn "s" "add" [ r "ra"; r "rb" ] []
                      fn "a2" "getitem" [ r "p"; i64 0 ] []; fn "y" "sub" [ r "s"; r "a2" ] []; output "y" ] x
            let a, b = piece 0 3, piece 3 3
            let expected = Array.map3 (fun av bv a2 -> max av 0f + max bv 0f - a2) (a.ToArray()) (b.ToArray()) (a.ToArray())
            expectSameBits "relu(p[0]) + relu(p[1]) - p[0]" again (tensorOf expected [| 2; 3; 40; 40 |])
        }
        test "matmul and bmm are the defining sums, with broadcast batches and vectors" {
            let a, b = wide 11 [| 3; 4; 6 |], wide 12 [| 3; 6; 5 |]
            let w = wide 13 [| 6; 5 |]
            let ab = runWith [ "b", b ] [ attr "b"; fn "y" "bmm" [ r "x"; r "b" ] []; output "y" ] a
            close "bmm" ab (NaiveReference.BatchMatMul(a, b))
            let aw = runWith [ "w", w ] [ attr "w"; fn "y" "matmul" [ r "x"; r "w" ] []; output "y" ] a
            let wExpanded = tensorOf (Array.concat [ w.ToArray(); w.ToArray(); w.ToArray() ]) [| 3; 6; 5 |]
            close "matmul broadcasts the matrix over the batch" aw (NaiveReference.BatchMatMul(a, wExpanded))
            let v = wide 14 [| 6 |]
            let av = runWith [ "v", v ] [ attr "v"; meth "y" "matmul" [ r "x"; r "v" ] []; output "y" ] a
            Expect.sequenceEqual av.Dimensions [ 3; 4 ] "a vector operand's dimension is dropped"
            close "matrix @ vector" (av.Reshape(3, 4, 1)) (NaiveReference.BatchMatMul(a, tensorOf (Array.concat [ v.ToArray(); v.ToArray(); v.ToArray() ]) [| 3; 6; 1 |]))
        }
        test "sub and div with tensors and scalars in either order; / of Python ints is a float" {
            let x, y = wide 15 [| 2; 3 |], Tensor.Generate((fun k -> float32 (k + 1)), [| 3 |])
            let xs = x.ToArray()
            let elementwise f = tensorOf (Array.mapi f xs) [| 2; 3 |]
            close "x - 1.5" (one (fn "y" "sub" [ r "x"; c (box 1.5) ] []) x) (elementwise (fun _ v -> v - 1.5f))
            close "2 - x" (one (fn "y" "sub" [ i64 2; r "x" ] []) x) (elementwise (fun _ v -> 2f - v))
            close "x / y (broadcast)" (runWith [ "d", y ] [ attr "d"; meth "y" "div" [ r "x"; r "d" ] []; output "y" ] x) (elementwise (fun k v -> v / float32 (k % 3 + 1)))
            close "1 / (x + 5)" (run [ fn "p" "add" [ r "x"; i64 5 ] []; fn "y" "div" [ c (box 1.0); r "p" ] []; output "y" ] x) (elementwise (fun _ v -> 1f / (v + 5f)))
            let e = refuses [ meth "s" "size" [ r "x"; i64 0 ] []; fn "q" "div" [ r "s"; i64 2 ] []; meth "y" "view" [ r "x"; r "q"; i64 -1 ] []; output "y" ] x [ "'shape'"; "integers" ]
            Expect.isFalse e.Unsupported "2 / 2 is the float 1.0, which view refuses as PyTorch does"
        }
        test "functional avg_pool2d and max_pool2d read PyTorch's arguments (stride defaults to the kernel)" {
            let x = wide 16 [| 2; 3; 9; 8 |]
            close "inception's avg_pool2d(x, kernel_size=3, stride=1, padding=1)"
                (one (fn "y" "avg_pool2d" [ r "x" ] [ "kernel_size", i64 3; "stride", i64 1; "padding", i64 1 ]) x)
                (NaiveReference.AvgPool2d(AvgPool2d.Create([| 3 |], [| 1 |], [| 1 |]), x))
            close "avg_pool2d(x, 2, count_include_pad=False, ceil_mode=True, padding=1)"
                (one (fn "y" "avg_pool2d" [ r "x"; i64 2 ] [ "padding", i64 1; "ceil_mode", c true; "count_include_pad", c false ]) x)
                (NaiveReference.AvgPool2d(AvgPool2d.Create([| 2 |], [| 2 |], [| 1 |], ceilMode = true, countIncludePad = false), x))
            expectSameBits "max_pool2d(x, 3, stride=2)" (one (fn "y" "max_pool2d" [ r "x"; i64 3 ] [ "stride", i64 2; "padding", i64 0; "dilation", i64 1; "ceil_mode", c false; "return_indices", c false ]) x)
                (NaiveReference.MaxPool2d(MaxPool2d.Create([| 3 |], [| 2 |]), x))
            let unbatched = x.Reshape(6, 9, 8)
            expectSameBits "max_pool2d(x, [2, 3]) unbatched, stride None" (one (fn "y" "max_pool2d" [ r "x"; ints [ 2; 3 ] ] [ "stride", c null ]) unbatched)
                (NaiveReference.MaxPool2d(MaxPool2d.Create([| 2; 3 |]), x).Reshape(6, 4, 2))
            refuses [ fn "y" "max_pool2d" [ r "x"; i64 2 ] [ "return_indices", c true ]; output "y" ] x [ "return_indices" ] |> fun e -> Expect.isTrue e.Unsupported "a valid call the engine does not compute"
        }
        test "dropout and stochastic_depth are the identity in eval, and refused as unsupported in training" {
            let x = wide 17 [| 2; 3 |]
            expectSameBits "stochastic_depth(x, 0.2, 'row', False)" (one (fn "y" "stochastic_depth" [ r "x"; c (box 0.2); c "row"; c false ] []) x) x
            expectSameBits "dropout(x, 0.5, False)" (one (fn "y" "dropout" [ r "x"; c (box 0.5); c false ] []) x) x
            let e = refuses [ fn "y" "stochastic_depth" [ r "x"; c (box 0.2); c "row" ] []; output "y" ] x [ "stochastic_depth"; "training" ]
            Expect.isTrue e.Unsupported "random in PyTorch: not computed, not wrong"
            let e2 = refuses [ fn "y" "dropout" [ r "x" ] []; output "y" ] x [ "dropout" ]
            Expect.isTrue e2.Unsupported "F.dropout defaults to training=True"
        }
        test "_assert passes on a true condition and stops on a false one with the model's message" {
            let x = wide 18 [| 1; 3; 4; 4 |]
            let check (size: int) =
                [ fn "s" "getattr" [ r "x"; c "shape" ] []; fn "h" "getitem" [ r "s"; i64 2 ] []
                  fn "ok" "eq" [ r "h"; i64 size ] []; fn "a" "_assert" [ r "ok"; c "Wrong image height!" ] []; output "x" ]
            expectSameBits "h == 4" (run (check 4) x) x
            refuses (check 5) x [ "Wrong image height!"; "assertion" ] |> fun e -> Expect.isFalse e.Unsupported "a failed check is the input's fault"
        }
        test "swin's window attention (padded, shifted, masked), relative position bias and patch merging follow torchvision" {
            let table = wide 21 [| 25; 2 |]
            let rng = Random 22
            let index = Tensor.FromInt64(ReadOnlySpan [| for _ in 1 .. 81 -> int64 (rng.Next 25) |], [| 81 |])
            let bias = runWith [ "i", index ] [ attr "i"; fn "y" "relative_position_bias" [ r "x"; r "i"; ints [ 3; 3 ] ] []; output "y" ] table
            Expect.sequenceEqual bias.Dimensions [ 1; 2; 9; 9 ] "[1, heads, N, N]"
            let ts, is, bs = table.ToArray(), index.Int64.ToArray(), bias.ToArray()
            for h in 0 .. 1 do
                for p in 0 .. 80 do
                    Expect.equal bs.[h * 81 + p] ts.[int is.[p] * 2 + h] $"bias[{h}, {p}] = table[index[{p}], {h}]"
            let x = wide 20 [| 2; 5; 7; 6 |]
            let scaled seed shape = NaiveReference.Map(wide seed shape, fun v -> v / 6.0)
            let qw, qb, pw, pb = scaled 23 [| 18; 6 |], wide 24 [| 18 |], scaled 25 [| 6; 6 |], wide 26 [| 6 |]
            let logitScale = tensorOf [| 1.5f; 5f |] [| 2; 1; 1 |] // ln 100 ≈ 4.6 clamps the second head
            // Both axes shifted; no shift; a window that covers the padded width, so only the height is shifted; Swin V2.
            for window, shift, cosine in [ [ 3; 3 ], [ 1; 1 ], false; [ 3; 3 ], [ 0; 0 ], false; [ 3; 8 ], [ 2; 2 ], false; [ 3; 3 ], [ 1; 1 ], true ] do
                let n = List.reduce (*) window
                let bias = wide 27 [| 1; 2; n; n |]
                let state = [ "qw", qw; "qb", qb; "pw", pw; "pb", pb; "bias", bias ] @ (if cosine then [ "ls", logitScale ] else [])
                let y =
                    runWith state
                        ([ for name, _ in state -> attr name ]
                         @ [ fn "y" "shifted_window_attention" [ r "x"; r "qw"; r "pw"; r "bias"; ints window; i64 2 ]
                                 ([ "shift_size", ints shift; "attention_dropout", c (box 0.0); "dropout", c (box 0.0); "qkv_bias", r "qb"; "proj_bias", r "pb" ]
                                  @ (if cosine then [ "logit_scale", r "ls" ] else []))
                             output "y" ]) x
                let expected = NaiveReference.ShiftedWindowAttention(x, qw, qb, pw, pb, bias, Array.ofList window, 2, Array.ofList shift, (if cosine then logitScale else null))
                close $"window {window}, shift {shift}, cosine {cosine}" y expected
            expectSameBits "patch_merging_pad" (one (fn "y" "patch_merging_pad" [ r "x" ] []) x) (NaiveReference.PatchMergingPad x)
            let e = refuses [ fn "y" "relative_position_bias" [ r "x"; r "x"; ints [ 3; 3 ] ] []; output "y" ] x [ "the table must be a float32 [rows, heads]" ]
            Expect.isFalse e.Unsupported "a wrong table is the input's fault"
        }
        test "inputs an operation cannot take are refused before anything is read, naming the problem" {
            let x = wide 19 [| 2; 3; 4 |]
            let fails node parts = refuses [ node; output node.Name ] x parts |> ignore
            fails (meth "y" "permute" [ r "x"; i64 0; i64 1 ] []) [ "permute"; "rank 3" ]
            fails (meth "y" "permute" [ r "x"; i64 0; i64 1; i64 1 ] []) [ "repeat" ]
            fails (meth "y" "permute" [ r "x"; i64 0; i64 1; i64 3 ] []) [ "dimension 3 is out of range" ]
            fails (meth "y" "expand" [ r "x"; i64 2; i64 5; i64 4 ] []) [ "expand"; "[2, 3, 4]"; "[2, 5, 4]" ]
            fails (meth "y" "expand" [ r "x"; i64 4 ] []) [ "expand"; "at least 3" ]
            fails (fn "y" "getitem" [ r "x"; GraphArg.List([| all; i64 3 |]) ] []) [ "index 3 is out of range for dimension 1 of size 3" ]
            fails (fn "y" "getitem" [ r "x"; GraphArg.List([| i64 0; i64 0; i64 0; i64 0 |]) ] []) [ "too many indices" ]
            fails (fn "y" "getitem" [ r "x"; GraphArg.List([| ellipsis; ellipsis |]) ] []) [ "single ellipsis" ]
            fails (fn "y" "layer_norm" [ r "x"; ints [ 3 ] ] []) [ "normalized_shape [3]"; "[2, 3, 4]" ]
            fails (fn "y" "matmul" [ r "x"; r "x" ] []) [ "matmul"; "inner sizes differ (4 and 3)" ]
            fails (fn "y" "bmm" [ r "x"; r "x" ] []) [ "bmm"; "[B, M, K]" ]
            fails (meth "y" "mean" [ r "x"; ints [ 1; -2 ] ] []) [ "dimension 1 appears more than once" ]
            fails (meth "y" "chunk" [ r "x"; i64 0 ] []) [ "chunks must be positive" ]
            fails (fn "y" "split" [ r "x"; ints [ 1; 1 ]; i64 1 ] []) [ "add up to dimension 1's size 3" ]
            fails (fn "y" "softmax" [ r "x"; i64 3 ] []) [ "softmax"; "out of range" ]
            fails (fn "y" "gelu" [ r "x" ] [ "approximate", c "fast" ]) [ "'none' or 'tanh'"; "fast" ]
            fails (fn "y" "hardtanh" [ r "x"; i64 1; i64 0 ] []) [ "min_val" ]
            let s = [ meth "s" "size" [ r "x" ] [] ]
            refuses (s @ [ fn "y" "getitem" [ r "s"; i64 3 ] []; output "y" ]) x [ "index 3 is out of range for a tuple of 3" ] |> ignore
            refuses (s @ [ fn "y" "floordiv" [ r "s"; i64 0 ] []; output "y" ]) x [ "floordiv of a list of 3" ] |> ignore
            refuses (s @ [ fn "g" "getitem" [ r "s"; i64 0 ] []; fn "y" "floordiv" [ r "g"; i64 0 ] []; output "y" ]) x [ "division by zero" ] |> ignore
            let e = refuses [ fn "y" "eq" [ r "x"; r "x" ] []; output "y" ] x [ "eq of a tensor" ]
            Expect.isTrue e.Unsupported "element-wise comparison is valid PyTorch the engine does not compute"
        }
    ]
