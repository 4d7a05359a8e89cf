/// The quantized tensors and modules of Fusion.Dsl.Quantization against PyTorch 1.13's onednn engine:
/// quantized_fixtures.py (beside this file) builds seeded cases in PyTorch at test time and writes their quantized
/// inputs, weights, biases, output qparams and PyTorch's integer outputs; every case is replayed here. A module's output
/// must equal PyTorch's exactly for at least `exactFraction` of the elements and within `maxSteps` quantization steps
/// for all; quantize and dequantize must be exact. Then the refusals: bad qparams, shapes and sizes.
module Fusion.Dsl.Tests.Quantization.QuantizedModuleTests

open System
open System.IO
open System.Collections.Generic
open System.Text.Json
open Expecto
open Fusion.Dsl.Tensors
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tests

/// The least fraction of a case's output elements that must equal PyTorch's exactly.
let exactFraction = 0.999

/// The engine's float interpolate against PyTorch's on the same input: bilinear's weights and sums in float32 may be
/// grouped otherwise than PyTorch's CPU kernel, a few float32 ulps of the output's magnitude (measured: 4.4e-7); nearest copies exactly.
let floatInterpolateRel = 2e-6

/// The most quantization steps any output element may differ from PyTorch's.
let maxSteps = 1

let private generator = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "quantized_fixtures.py")

let private needTorch () = Support.requireTool "PyTorch (/usr/bin/python3 with python3-torch)" (Support.pythonHas [ "torch"; "numpy" ])

/// One fixture case as PyTorch wrote it.
type private Case = { Name: string; Kind: string; Json: JsonElement }

/// The fixture cases, generated once per test run by PyTorch into a temp folder.
let private cases =
    lazy (
        use doc = Support.generatedJson generator
        [ for c in doc.RootElement.GetProperty("cases").EnumerateArray() ->
            { Name = c.GetProperty("name").GetString() |> nonNull
              Kind = c.GetProperty("kind").GetString() |> nonNull
              Json = c.Clone() } ])

let private ints (e: JsonElement) = [| for v in e.EnumerateArray() -> v.GetInt32() |]
let private int64s (e: JsonElement) = [| for v in e.EnumerateArray() -> v.GetInt64() |]
let private doubles (e: JsonElement) = [| for v in e.EnumerateArray() -> v.GetDouble() |]
let private floats (e: JsonElement) = [| for v in e.EnumerateArray() -> float32 (v.GetDouble()) |]
let private pair (e: JsonElement) = let a = ints e in struct (a.[0], a.[1])

let private dtypeOf (e: JsonElement) =
    match e.GetProperty("dtype").GetString() with
    | "quint8" -> QuantizedDType.QUInt8
    | "qint8" -> QuantizedDType.QInt8
    | d -> failwithf "unknown dtype %s" d

/// A quantized tensor as the generator writes it.
let private qtensor (e: JsonElement) =
    let values = ints (e.GetProperty "values")
    let shape = ints (e.GetProperty "shape")
    match e.TryGetProperty "axis" with
    | true, axis ->
        QuantizedTensor.FromIntRepr(ReadOnlySpan values, shape, doubles (e.GetProperty "scales"), int64s (e.GetProperty "zero_points"), axis.GetInt32(), dtypeOf e)
    | _ -> QuantizedTensor.FromIntRepr(ReadOnlySpan values, shape, e.GetProperty("scale").GetDouble(), e.GetProperty("zero_point").GetInt64(), dtypeOf e)

let private inputs (c: Case) = [ for i in c.Json.GetProperty("inputs").EnumerateArray() -> qtensor i ]
let private arg (c: Case) (name: string) = c.Json.GetProperty("args").GetProperty(name)
let private outScale (c: Case) = c.Json.GetProperty("scale").GetDouble()
let private outZeroPoint (c: Case) = c.Json.GetProperty("zero_point").GetInt64()

let private bias (c: Case) =
    match c.Json.GetProperty "bias" with
    | b when b.ValueKind = JsonValueKind.Null -> null
    | b -> let v = floats b in Tensor.FromFloat32(ReadOnlySpan v, v.Length)

/// A JSON argument as the Python value a graph holds: null, a bool, an integer (long), a float (double), a string or a list.
let rec private pyValue (e: JsonElement) : objnull =
    match e.ValueKind with
    | JsonValueKind.Null -> null
    | JsonValueKind.True -> box true
    | JsonValueKind.False -> box false
    | JsonValueKind.String -> box (e.GetString())
    | JsonValueKind.Array -> box [ for v in e.EnumerateArray() -> pyValue v ]
    | JsonValueKind.Number -> match e.TryGetInt64() with | true, l when not (e.GetRawText().Contains ".") -> box l | _ -> box (e.GetDouble())
    | k -> failwithf "unexpected JSON %A" k

/// Our output for a module case.
let private forward (c: Case) : QuantizedTensor =
    let xs = inputs c
    match c.Kind with
    | "linear" -> QuantizedLinear(qtensor (c.Json.GetProperty "weight"), bias c, outScale c, outZeroPoint c, (arg c "relu").GetBoolean()).Forward xs.Head
    | "conv1d" | "conv2d" | "conv3d" ->
        QuantizedConv(qtensor (c.Json.GetProperty "weight"), bias c, outScale c, outZeroPoint c, ints (arg c "stride"), ints (arg c "padding"),
                      ints (arg c "dilation"), (arg c "groups").GetInt32(), (arg c "relu").GetBoolean()).Forward xs.Head
    | "conv_transpose1d" | "conv_transpose2d" | "conv_transpose3d" ->
        let stride = ints (arg c "stride")
        QuantizedConvTranspose(qtensor (c.Json.GetProperty "weight"), bias c, outScale c, outZeroPoint c, stride, ints (arg c "padding"),
                               Array.zeroCreate stride.Length, ints (arg c "dilation"), (arg c "groups").GetInt32()).Forward xs.Head
    | "batch_norm" ->
        let vector name = let v = floats (arg c name) in Tensor.FromFloat32(ReadOnlySpan v, v.Length)
        QuantizedBatchNorm((arg c "rank").GetInt32(), vector "weight", vector "bias", vector "running_mean", vector "running_var", (arg c "eps").GetDouble(),
                           outScale c, outZeroPoint c, (arg c "relu").GetBoolean()).Forward xs.Head
    | "add" -> QFunctional(outScale c, outZeroPoint c).Add(xs.[0], xs.[1])
    | "add_relu" -> QFunctional(outScale c, outZeroPoint c).AddRelu(xs.[0], xs.[1])
    | "mul" -> QFunctional(outScale c, outZeroPoint c).Mul(xs.[0], xs.[1])
    | "cat" -> QFunctional(outScale c, outZeroPoint c).Cat(List.toArray xs, (arg c "dim").GetInt32())
    | "relu" -> QuantizedReLU().Forward xs.Head
    | "max_pool2d" ->
        QuantizedMaxPool2d(pair (arg c "kernel"), pair (arg c "stride"), pair (arg c "padding"), pair (arg c "dilation"), (arg c "ceil_mode").GetBoolean()).Forward xs.Head
    | "adaptive_avg_pool2d" -> QuantizedAdaptiveAvgPool2d(pair (arg c "output_size")).Forward xs.Head
    | "flatten" -> QuantizedFlatten((arg c "start_dim").GetInt32(), (arg c "end_dim").GetInt32()).Forward xs.Head
    | "mean" ->
        QuantizedMean([| for d in (arg c "dim").EnumerateArray() -> d.GetInt32() |], (arg c "keepdim").GetBoolean()).Forward(xs.Head, (arg c "channels_last").GetBoolean())
    | "avg_pool2d" ->
        let divisor = match arg c "divisor_override" with d when d.ValueKind = JsonValueKind.Null -> Nullable() | d -> Nullable(d.GetInt32())
        QuantizedAvgPool2d(pair (arg c "kernel"), pair (arg c "stride"), pair (arg c "padding"), (arg c "ceil_mode").GetBoolean(),
                           (arg c "count_include_pad").GetBoolean(), divisor).Forward(xs.Head, (arg c "channels_last").GetBoolean())
    | "leaky_relu" -> QuantizedLeakyReLU(outScale c, outZeroPoint c, (arg c "negative_slope").GetDouble()).Forward xs.Head
    | "upsample" ->
        let spec = Fusion.Dsl.Engine.Interpolation.FromArguments(pyValue (arg c "size"), pyValue (arg c "scale_factor"), pyValue (arg c "mode"),
                                                                 pyValue (arg c "align_corners"), pyValue (arg c "recompute_scale_factor"))
        QuantizedUpsample(spec).Forward(xs.Head, (arg c "channels_last").GetBoolean())
    | "prelu" -> QuantizedPReLU(qtensor (c.Json.GetProperty "weight"), outScale c, outZeroPoint c).Forward xs.Head
    | "elu" -> QuantizedELU(outScale c, outZeroPoint c, (arg c "alpha").GetDouble()).Forward xs.Head
    | "hardswish" -> QuantizedHardswish(outScale c, outZeroPoint c).Forward xs.Head
    | "hardsigmoid" -> QuantizedHardsigmoid().Forward xs.Head
    | "sigmoid" -> QuantizedSigmoid().Forward xs.Head
    | "group_norm" ->
        let channels = xs.Head.Size 1
        let affine name = match arg c name with v when v.ValueKind = JsonValueKind.Null -> null | v -> Tensor.FromFloat32(ReadOnlySpan(floats v), channels)
        QuantizedGroupNorm((arg c "num_groups").GetInt32(), channels, affine "weight", affine "bias", (arg c "eps").GetDouble(), outScale c, outZeroPoint c).Forward xs.Head
    | "layer_norm" ->
        let shape = ints (arg c "normalized_shape")
        let affine name = match arg c name with v when v.ValueKind = JsonValueKind.Null -> null | v -> Tensor.FromFloat32(ReadOnlySpan(floats v), shape)
        QuantizedLayerNorm(shape, affine "weight", affine "bias", (arg c "eps").GetDouble(), outScale c, outZeroPoint c).Forward xs.Head
    | "relu6" -> QuantizedReLU6().Forward xs.Head
    | "transpose" -> QuantizedTranspose((arg c "dim0").GetInt32(), (arg c "dim1").GetInt32()).Forward xs.Head
    | "chunk" ->
        let pieces = QuantizedChunk((arg c "chunks").GetInt32(), (arg c "dim").GetInt32()).Forward xs.Head
        Expect.equal pieces.Count ((arg c "pieces").GetInt32()) (sprintf "%s: as many pieces as PyTorch's" c.Name)
        pieces.[(arg c "index").GetInt32()]
    | k -> failwithf "unknown kind %s" k

/// How a case's output compares with PyTorch's: the fraction of equal elements, the largest difference in steps, and
/// what differs besides the values (shape, dtype, qparams).
type private Comparison = { Exact: float; Worst: int; Elements: int; Problems: string list }

let private compare (ours: QuantizedTensor) (theirs: QuantizedTensor) =
    let problems =
        [ if ours.Dimensions <> theirs.Dimensions then sprintf "shape: ours %A, PyTorch's %A" (Seq.toList ours.Dimensions) (Seq.toList theirs.Dimensions)
          if ours.DType <> theirs.DType then sprintf "dtype: ours %A, PyTorch's %A" ours.DType theirs.DType
          if Seq.toList ours.Scales <> Seq.toList theirs.Scales || Seq.toList ours.ZeroPoints <> Seq.toList theirs.ZeroPoints then
              sprintf "qparams: ours %A %A, PyTorch's %A %A" (Seq.toList ours.Scales) (Seq.toList ours.ZeroPoints) (Seq.toList theirs.Scales) (Seq.toList theirs.ZeroPoints) ]
    if not problems.IsEmpty then { Exact = 0.0; Worst = Int32.MaxValue; Elements = theirs.Count; Problems = problems }
    else
        let a, b = ours.IntRepr(), theirs.IntRepr()
        let diffs = Array.map2 (fun x y -> abs (x - y)) a b
        let exact = if a.Length = 0 then 1.0 else float (diffs |> Array.filter ((=) 0) |> Array.length) / float a.Length
        { Exact = exact; Worst = (if diffs.Length = 0 then 0 else Array.max diffs); Elements = a.Length; Problems = [] }

/// A test that every fixture case of the given kinds matches PyTorch within `exactFraction` and `maxSteps`; fails
/// naming each case that does not, with its exact fraction, and prints the totals when it passes.
let private matchesPyTorch (title: string) (kinds: string list) (minimumCases: int) =
    test (sprintf "%s: integer outputs equal PyTorch onednn's for >= %g of the elements and within %d step on every fixture case" title exactFraction maxSteps) {
        needTorch ()
        let mine = cases.Force() |> List.filter (fun c -> List.contains c.Kind kinds)
        Expect.isGreaterThanOrEqual mine.Length minimumCases (sprintf "at least %d %s cases were generated" minimumCases title)
        let results = [ for c in mine -> c, compare (forward c) (qtensor (c.Json.GetProperty "expected")) ]
        let failures =
            [ for c, r in results do
                if not r.Problems.IsEmpty then yield sprintf "%s: %s" c.Name (String.Join("; ", r.Problems))
                elif r.Exact < exactFraction || r.Worst > maxSteps then
                    yield sprintf "%s: exact fraction %.5f (need %g), worst %d steps (limit %d), %d elements" c.Name r.Exact exactFraction r.Worst maxSteps r.Elements ]
        if not failures.IsEmpty then
            failtestf "%d of %d %s cases differ from PyTorch:\n%s" failures.Length mine.Length title (String.Join("\n", List.truncate 15 failures))
        let elements = results |> List.sumBy (fun (_, r) -> r.Elements)
        let exact = results |> List.sumBy (fun (_, r) -> r.Exact * float r.Elements)
        printfn "%s: %d cases, %d elements, %.5f exact, lowest case %.5f, worst %d steps" title mine.Length elements (exact / float elements)
            (results |> List.map (fun (_, r) -> r.Exact) |> List.min) (results |> List.map (fun (_, r) -> r.Worst) |> List.max)
    }

let private input (values: int[]) (shape: int[]) = QuantizedTensor.FromIntRepr(ReadOnlySpan values, shape, 0.1, 3L, QuantizedDType.QUInt8)
let private weight (shape: int[]) = QuantizedTensor.FromIntRepr(ReadOnlySpan(Array.create (Array.reduce (*) shape) 1), shape, 0.01, 0L, QuantizedDType.QInt8)
let private floatTensor (shape: int[]) = Tensor.Zeros shape

/// `f` throws an exception of type 'E (or a subtype) whose message contains `says`.
let private refuses<'E when 'E :> exn> (says: string) (f: unit -> unit) =
    let e =
        try
            f ()
            failtestf "expected a refusal saying %s, but nothing was thrown" says
        with
        | :? 'E as e -> e :> exn
        | e -> failtestf "expected %s, got %s: %s" typeof<'E>.Name (e.GetType().Name) e.Message
    Expect.stringContains e.Message says "the message names the problem"

[<Tests>]
let tests =
    testList "Quantization" [
        testList "QuantizedModules" [
            test "quantize_per_tensor, quantize_per_channel and dequantize() equal PyTorch's bit for bit on every fixture case" {
                needTorch ()
                let mine = cases.Force() |> List.filter (fun c -> c.Kind = "quantize")
                Expect.isGreaterThanOrEqual mine.Length 30 "at least 30 quantize cases were generated"
                let failures =
                    [ for c in mine do
                        let x = c.Json.GetProperty "x"
                        let t = Tensor.FromFloat32(ReadOnlySpan(floats (x.GetProperty "data")), ints (x.GetProperty "shape"))
                        let expected = qtensor (c.Json.GetProperty "expected")
                        let ours =
                            match expected.Axis with
                            | a when a.HasValue -> QuantizedTensor.Quantize(t, expected.Scales, expected.ZeroPoints, a.Value, expected.DType)
                            | _ -> QuantizedTensor.Quantize(t, expected.Scale, expected.ZeroPoint, expected.DType)
                        let r = compare ours expected
                        if not r.Problems.IsEmpty || r.Exact < 1.0 then
                            yield sprintf "%s: quantize exact fraction %.5f, worst %d steps %s" c.Name r.Exact r.Worst (String.Join("; ", r.Problems))
                        let deq = ours.Dequantize().ToArray()
                        let theirs = floats (c.Json.GetProperty "dequantized")
                        let differ = Array.map2 (fun (a: float32) b -> BitConverter.SingleToInt32Bits a <> BitConverter.SingleToInt32Bits b) deq theirs |> Array.filter id |> Array.length
                        if differ > 0 then yield sprintf "%s: dequantize differs in %d of %d elements" c.Name differ deq.Length ]
                if not failures.IsEmpty then
                    failtestf "%d of %d quantize cases differ from PyTorch:\n%s" failures.Length mine.Length (String.Join("\n", List.truncate 15 failures))
            }
            matchesPyTorch "quantized Linear and LinearReLU" [ "linear" ] 45
            matchesPyTorch "quantized Conv2d and ConvReLU2d" [ "conv2d" ] 65
            matchesPyTorch "quantized Conv1d, Conv3d, ConvReLU1d and ConvReLU3d" [ "conv1d"; "conv3d" ] 40
            matchesPyTorch "quantized BatchNorm2d, BatchNorm3d, BNReLU2d and BNReLU3d" [ "batch_norm" ] 12
            matchesPyTorch "quantized ConvTranspose1d, ConvTranspose2d and ConvTranspose3d" [ "conv_transpose1d"; "conv_transpose2d"; "conv_transpose3d" ] 30
            matchesPyTorch "quantized LayerNorm" [ "layer_norm" ] 8
            matchesPyTorch "quantized GroupNorm and InstanceNorm1d/2d/3d" [ "group_norm" ] 11
            matchesPyTorch "quantized LeakyReLU and ELU, and sigmoid on a quantized tensor" [ "leaky_relu"; "elu"; "sigmoid" ] 18
            matchesPyTorch "F.interpolate/nn.Upsample on quantized tensors, nearest and bilinear (align_corners both ways), NCHW and NHWC kernels" [ "upsample" ] 150
            matchesPyTorch "quantized PReLU (one slope or one per channel, exact and inexact quantized 1.0, both dtypes)" [ "prelu" ] 24
            matchesPyTorch "QFunctional add and add_relu" [ "add"; "add_relu" ] 30
            matchesPyTorch "QFunctional mul and cat" [ "mul"; "cat" ] 30
            matchesPyTorch "quantized ReLU, MaxPool2d, AdaptiveAvgPool2d and Flatten" [ "relu"; "max_pool2d"; "adaptive_avg_pool2d"; "flatten" ] 33
            matchesPyTorch "quantized mean over the innermost dimensions, contiguous and channels-last" [ "mean" ] 15
            matchesPyTorch "quantized avg_pool2d, NCHW and NHWC kernels" [ "avg_pool2d" ] 15
            matchesPyTorch "quantized Hardswish, hardsigmoid and ReLU6" [ "hardswish"; "hardsigmoid"; "relu6" ] 18
            matchesPyTorch "quantized transpose and chunk" [ "transpose"; "chunk" ] 13

            test "an observer's qparams quantize what it observed: per tensor as quantize_per_tensor, per channel along the axis" {
                let x = Tensor.FromFloat32(ReadOnlySpan [| -1.0f; 0.25f; 2.0f; 0.5f; -0.75f; 3.5f |], 2, 3)
                let q = MinMaxObserver(QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine)).Observe(x).CalculateQParams()
                let ours = QuantizedTensor.Quantize(x, q, QuantizedDType.QUInt8)
                let direct = QuantizedTensor.Quantize(x, float q.Scales.[0], q.ZeroPoints.[0], QuantizedDType.QUInt8)
                Expect.equal (ours.IntRepr()) (direct.IntRepr()) "the same values as quantizing with the scale and zero point"
                Expect.equal (ours.IntRepr() |> Array.min, ours.IntRepr() |> Array.max) (0, 255) "the observed range spans the dtype"
                let pc = PerChannelMinMaxObserver(QuantizationSettings(QuantizedDType.QInt8, QScheme.PerChannelSymmetric), 0).Observe(x).CalculateQParams()
                let perChannel = QuantizedTensor.Quantize(x, pc, QuantizedDType.QInt8, Nullable 0)
                Expect.equal (perChannel.Axis, perChannel.Scales.Length) (Nullable 0, 2) "one scale per row"
                Expect.isTrue (x.MaxAbsDiff(perChannel.Dequantize()) <= float pc.Scales.[1] / 2.0 + 1e-7) "dequantize is within half a step"
            }
            test "a module returns a new tensor and leaves its input as it was" {
                let x = input [| 0; 10; 200; 255; 7; 3 |] [| 2; 3 |]
                let before = x.IntRepr()
                let y = QuantizedLinear(weight [| 4; 3 |], null, 0.05, 10L).Forward x
                Expect.equal (x.IntRepr()) before "the input is unchanged"
                Expect.equal (Seq.toList y.Dimensions) [ 2; 4 ] "the output has out_features columns"
                Expect.equal (y.Scale, y.ZeroPoint) (0.05, 10L) "the output has the module's qparams"
            }
            test "a scale that is zero, negative, NaN or infinite is refused, naming the scale" {
                for s in [ 0.0; -0.1; nan; infinity; 1e-300 ] do
                    refuses<ArgumentException> "scale" (fun () -> QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1 |], [| 1 |], s, 0L, QuantizedDType.QUInt8) |> ignore)
                    refuses<ArgumentException> "scale" (fun () -> QuantizedTensor.Quantize(floatTensor [| 2 |], s, 0L, QuantizedDType.QInt8) |> ignore)
                    refuses<ArgumentException> "scale" (fun () -> QuantizedLinear(weight [| 2; 2 |], null, s, 0L) |> ignore)
                    refuses<ArgumentException> "scale" (fun () -> QFunctional(s, 0L) |> ignore)
            }
            test "a zero point outside the dtype's range is refused, naming the range" {
                refuses<ArgumentException> "0..255" (fun () -> QuantizedTensor.Quantize(floatTensor [| 2 |], 0.1, 256L, QuantizedDType.QUInt8) |> ignore)
                refuses<ArgumentException> "0..255" (fun () -> QuantizedTensor.Quantize(floatTensor [| 2 |], 0.1, -1L, QuantizedDType.QUInt8) |> ignore)
                refuses<ArgumentException> "-128..127" (fun () -> QuantizedTensor.Quantize(floatTensor [| 2 |], 0.1, 128L, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "0..255" (fun () -> QuantizedConv(weight [| 1; 1; 1; 1 |], null, 0.1, 300L) |> ignore)
                refuses<ArgumentException> "-128..127" (fun () -> QFunctional(0.1, 200L).Add(QuantizedTensor.Quantize(floatTensor [| 2 |], 0.1, 0L, QuantizedDType.QInt8), QuantizedTensor.Quantize(floatTensor [| 2 |], 0.1, 0L, QuantizedDType.QInt8)) |> ignore)
            }
            test "values outside the dtype and shapes that do not hold them are refused" {
                refuses<ArgumentException> "outside torch.quint8's range" (fun () -> input [| 0; 256 |] [| 2 |] |> ignore)
                refuses<ArgumentException> "outside torch.qint8's range" (fun () -> QuantizedTensor.FromIntRepr(ReadOnlySpan [| -129 |], [| 1 |], 0.1, 0L, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "holds 6 elements, not 4" (fun () -> input [| 1; 2; 3; 4 |] [| 2; 3 |] |> ignore)
                refuses<ArgumentException> "negative dimension" (fun () -> input [||] [| -1; 0 |] |> ignore)
            }
            test "per-channel qparams must match the axis: count, range and no negative axis (as PyTorch)" {
                let t = floatTensor [| 3; 4 |]
                refuses<ArgumentException> "needs 3 scales" (fun () -> QuantizedTensor.Quantize(t, [ 0.1; 0.2 ], [ 0L; 0L ], 0, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "as many zero points as scales" (fun () -> QuantizedTensor.Quantize(t, [ 0.1; 0.2; 0.3 ], [ 0L ], 0, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "axis 2 is out of range" (fun () -> QuantizedTensor.Quantize(t, [ 0.1 ], [ 0L ], 2, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "axis -1 is out of range" (fun () -> QuantizedTensor.Quantize(t, [ 0.1 ], [ 0L ], -1, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "scale" (fun () -> QuantizedTensor.Quantize(t, [ 0.1; nan; 0.3 ], [ 0L; 0L; 0L ], 0, QuantizedDType.QInt8) |> ignore)
                refuses<ArgumentException> "need a channel axis" (fun () -> QuantizedTensor.Quantize(t, QParams([ 0.1f; 0.2f ], [ 0L; 0L ]), QuantizedDType.QInt8) |> ignore)
            }
            test "NaN and infinities are refused by quantize, naming the element" {
                for v in [ nanf; infinityf; -infinityf ] do
                    refuses<ArgumentException> "element 1" (fun () -> QuantizedTensor.Quantize(Tensor.FromFloat32(ReadOnlySpan [| 0.0f; v |], 2), 0.1, 0L, QuantizedDType.QUInt8) |> ignore)
            }
            test "Linear and Conv2d refuse what onednn refuses: asymmetric or quint8 weights, qint8 input, per-channel input; and mismatched shapes" {
                let asym = QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3; 4 |], [| 2; 2 |], 0.1, 5L, QuantizedDType.QInt8)
                refuses<ArgumentException> "zero points are 0" (fun () -> QuantizedLinear(asym, null, 0.1, 0L) |> ignore)
                let u8 = QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3; 4 |], [| 2; 2 |], 0.1, 0L, QuantizedDType.QUInt8)
                refuses<ArgumentException> "torch.qint8 weight" (fun () -> QuantizedLinear(u8, null, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "bias must be float32 of shape [2]" (fun () -> QuantizedLinear(weight [| 2; 2 |], floatTensor [| 3 |], 0.1, 0L) |> ignore)
                let lin = QuantizedLinear(weight [| 2; 3 |], null, 0.1, 0L)
                refuses<ArgumentException> "[..., 3]" (fun () -> lin.Forward(input [| 1; 2 |] [| 1; 2 |]) |> ignore)
                refuses<ArgumentException> "quint8 input" (fun () -> lin.Forward(QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3 |], [| 1; 3 |], 0.1, 0L, QuantizedDType.QInt8)) |> ignore)
                let perChannel = QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3 |], [| 1; 3 |], [ 0.1 ], [ 0L ], 0, QuantizedDType.QUInt8)
                refuses<ArgumentException> "per-tensor" (fun () -> lin.Forward perChannel |> ignore)
                let conv = QuantizedConv(weight [| 4; 1; 3; 3 |], null, 0.1, 0L, groups = 2)
                refuses<ArgumentException> "[N, 2, H, W]" (fun () -> conv.Forward(input (Array.zeroCreate 27) [| 1; 3; 3; 3 |]) |> ignore)
                refuses<ArgumentException> "smaller than the dilated kernel" (fun () -> conv.Forward(input (Array.zeroCreate 8) [| 1; 2; 2; 2 |]) |> ignore)
                refuses<ArgumentException> "groups (3) must divide" (fun () -> QuantizedConv(weight [| 4; 1; 3; 3 |], null, 0.1, 0L, groups = 3) |> ignore)
                refuses<ArgumentException> "axis 1" (fun () ->
                    QuantizedLinear(QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2 |], [| 1; 2 |], [ 0.1; 0.1 ], [ 0L; 0L ], 1, QuantizedDType.QInt8), null, 0.1, 0L) |> ignore)
            }
            test "Conv1d and Conv3d refuse an input of another rank, geometry of another length and an input shallower than the dilated kernel, naming the module" {
                let conv1d = QuantizedConv(weight [| 4; 2; 3 |], null, 0.1, 0L)
                Expect.equal (conv1d.Rank, conv1d.TypeName) (1, "QuantizedConv1d") "the rank is the weight's less 2"
                refuses<ArgumentException> "quantized Conv1d expects input of shape [N, 2, W]" (fun () -> conv1d.Forward(input (Array.zeroCreate 18) [| 1; 2; 3; 3 |]) |> ignore)
                refuses<ArgumentException> "the input length 2 padded by 0 is smaller than the dilated kernel (3)" (fun () -> conv1d.Forward(input (Array.zeroCreate 4) [| 1; 2; 2 |]) |> ignore)
                let conv3d = QuantizedConv(weight [| 2; 1; 3; 1; 1 |], null, 0.1, 0L, [| 1; 1; 1 |], [| 0; 0; 0 |], [| 2; 1; 1 |], fuseRelu = true)
                Expect.equal conv3d.TypeName "QuantizedConvReLU3d" "ReLU fused"
                refuses<ArgumentException> "quantized ConvReLU3d expects input of shape [N, 1, D, H, W]" (fun () -> conv3d.Forward(input (Array.zeroCreate 8) [| 1; 2; 4 |]) |> ignore)
                refuses<ArgumentException> "quantized ConvReLU3d: the input depth 4 padded by 0 is smaller than the dilated kernel (5)" (fun () -> conv3d.Forward(input (Array.zeroCreate 16) [| 1; 1; 4; 2; 2 |]) |> ignore)
                refuses<ArgumentException> "takes 3 stride value(s)" (fun () -> QuantizedConv(weight [| 2; 1; 3; 1; 1 |], null, 0.1, 0L, [| 1; 1 |], [| 0; 0; 0 |], [| 1; 1; 1 |]) |> ignore)
                refuses<ArgumentException> "1 to 3 kernel dimensions, got rank 6" (fun () -> QuantizedConv(weight [| 1; 1; 1; 1; 1; 1 |], null, 0.1, 0L) |> ignore)
            }
            test "ConvTranspose refuses what PyTorch's onednn refuses (a per-channel weight, output_padding), groups that do not divide C_in, an input of another rank or channel count, and an output dimension below 1, naming the module" {
                let ct = QuantizedConvTranspose(weight [| 4; 3; 3; 3 |], null, 0.1, 0L, [| 2; 2 |], [| 1; 1 |], [| 0; 0 |], [| 1; 1 |], groups = 2)
                Expect.equal (ct.Rank, ct.TypeName, ct.OutChannels) (2, "QuantizedConvTranspose2d", 6) "the output channels are groups times the weight's second dimension"
                let perChannel = QuantizedTensor.FromIntRepr(ReadOnlySpan(Array.create 36 1), [| 4; 1; 3; 3 |], [ 0.1; 0.1; 0.1; 0.1 ], [ 0L; 0L; 0L; 0L ], 0, QuantizedDType.QInt8)
                refuses<ArgumentException> "Per Channel Quantization is currently disabled for transposed conv" (fun () ->
                    QuantizedConvTranspose(perChannel, null, 0.1, 0L, [| 1; 1 |], [| 0; 0 |], [| 0; 0 |], [| 1; 1 |]) |> ignore)
                refuses<ArgumentException> "ONEDNN only supports zero output_padding" (fun () ->
                    QuantizedConvTranspose(weight [| 2; 2; 3 |], null, 0.1, 0L, [| 2 |], [| 0 |], [| 1 |], [| 1 |]) |> ignore)
                refuses<ArgumentException> "groups (3) must divide the 4 input channels" (fun () ->
                    QuantizedConvTranspose(weight [| 4; 1; 3; 3 |], null, 0.1, 0L, [| 1; 1 |], [| 0; 0 |], [| 0; 0 |], [| 1; 1 |], groups = 3) |> ignore)
                refuses<ArgumentException> "the bias must be float32 of shape [6]" (fun () ->
                    QuantizedConvTranspose(weight [| 4; 3; 3; 3 |], floatTensor [| 4 |], 0.1, 0L, [| 1; 1 |], [| 0; 0 |], [| 0; 0 |], [| 1; 1 |], groups = 2) |> ignore)
                refuses<ArgumentException> "quantized ConvTranspose2d expects input of shape [N, 4, H, W]" (fun () -> ct.Forward(input (Array.zeroCreate 27) [| 1; 3; 3; 3 |]) |> ignore)
                refuses<ArgumentException> "quantized ConvTranspose2d expects input of shape [N, 4, H, W]" (fun () -> ct.Forward(input (Array.zeroCreate 12) [| 1; 4; 3 |]) |> ignore)
                let padded = QuantizedConvTranspose(weight [| 2; 4; 3 |], null, 0.1, 0L, [| 1 |], [| 2 |], [| 0 |], [| 1 |])
                refuses<ArgumentException> "quantized ConvTranspose1d: the output w would be -1" (fun () -> padded.Forward(input (Array.zeroCreate 2) [| 1; 2; 1 |]) |> ignore)
                let y = padded.Forward(input [||] [| 0; 2; 5 |])
                Expect.equal (Seq.toList y.Dimensions) [ 0; 4; 3 ] "an empty batch gives an empty output of the right shape, as PyTorch's"
            }
            test "PReLU refuses a per-channel or matrix weight, an input of another dtype or without dimensions, and channels other than its slopes, naming the module" {
                let slopes (n: int) = QuantizedTensor.FromIntRepr(ReadOnlySpan(Array.create n 1), [| n |], 1.0, 0L, QuantizedDType.QUInt8)
                refuses<ArgumentException> "quantized PReLU takes a per-tensor quantized weight [num_parameters], got a per-channel one" (fun () ->
                    QuantizedPReLU(QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2 |], [| 2 |], [ 0.1; 0.1 ], [ 0L; 0L ], 0, QuantizedDType.QUInt8), 0.1, 0L) |> ignore)
                refuses<ArgumentException> "got shape [1, 2]" (fun () -> QuantizedPReLU(QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2 |], [| 1; 2 |], 1.0, 0L, QuantizedDType.QUInt8), 0.1, 0L) |> ignore)
                refuses<ArgumentException> "0..255" (fun () -> QuantizedPReLU(slopes 1, 0.1, -1L) |> ignore)
                let p = QuantizedPReLU(slopes 3, 0.1, 0L)
                refuses<ArgumentException> "quantized PReLU takes torch.quint8 input, not torch.qint8" (fun () -> p.Forward(QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3 |], [| 1; 3 |], 0.1, 0L, QuantizedDType.QInt8)) |> ignore)
                refuses<ArgumentException> "quantized PReLU has 3 slopes, one per channel, and expects input of shape [N, 3, ...], got [1, 4]" (fun () -> p.Forward(input [| 1; 2; 3; 4 |] [| 1; 4 |]) |> ignore)
                refuses<ArgumentException> "zero-dim input tensor is not allowed" (fun () -> QuantizedPReLU(slopes 1, 0.1, 0L).Forward(input [| 1 |] [||]) |> ignore)
                Expect.equal (Seq.toList (QuantizedPReLU(slopes 1, 0.1, 0L).Forward(input [| 1; 2; 3 |] [| 3 |])).Dimensions) [ 3 ] "one slope takes a 1-d input, as PyTorch's"
            }
            test "the engine's float interpolate (what calibration runs) equals PyTorch's float F.interpolate on every upsample fixture's input: nearest exactly, bilinear within floatInterpolateRel" {
                needTorch ()
                let mine = cases.Force() |> List.filter (fun c -> c.Kind = "upsample")
                Expect.isGreaterThanOrEqual mine.Length 150 "the upsample cases"
                let mutable worstBilinear = 0.0
                let failures =
                    [ for c in mine do
                        let x = (inputs c).Head.Dequantize()
                        let args = [ for name in [ "size"; "scale_factor"; "mode"; "align_corners"; "recompute_scale_factor" ] -> KeyValuePair(name, pyValue (arg c name)) ]
                        let m = Fusion.Dsl.Layers.OpaqueModule.Create("Upsample", "torch.nn", args)
                        let ours = Fusion.Dsl.Engine.Forward.Run(m, x).ToArray()
                        let theirs = floats (c.Json.GetProperty "float_expected")
                        let scale = theirs |> Array.fold (fun a v -> max a (abs v)) 1e-30f
                        let worst = if ours.Length <> theirs.Length then infinity else Array.fold2 (fun a (u: float32) v -> max a (float (abs (u - v)) / float scale)) 0.0 ours theirs
                        let limit = if (arg c "mode").GetString() = "nearest" then 0.0 else floatInterpolateRel
                        if limit > 0.0 then worstBilinear <- max worstBilinear worst
                        if worst > limit then yield sprintf "%s: largest difference %.3g of the output's magnitude (limit %g)" c.Name worst limit ]
                if not failures.IsEmpty then failtestf "%d cases differ:\n%s" failures.Length (String.Join("\n", List.truncate 15 failures))
                printfn "float interpolate: %d cases, bilinear's largest difference %.3g of the output's magnitude" mine.Length worstBilinear
            }
            test "upsampling refuses what F.interpolate refuses (size and scale_factor together or neither, align_corners with nearest, recompute_scale_factor with a size), other modes, a non-4-d input and an output dimension of 0" {
                let spec (size: objnull) (scale: objnull) (mode: string) (align: objnull) (recompute: objnull) =
                    Fusion.Dsl.Engine.Interpolation.FromArguments(size, scale, mode, align, recompute)
                refuses<ArgumentException> "only one of size or scale_factor should be defined" (fun () -> spec (box 4L) (box 2.0) "nearest" null null |> ignore)
                refuses<ArgumentException> "either size or scale_factor should be defined" (fun () -> spec null null "nearest" null null |> ignore)
                refuses<ArgumentException> "align_corners option can only be set with the interpolating modes" (fun () -> spec null (box 2.0) "nearest" (box false) null |> ignore)
                refuses<ArgumentException> "recompute_scale_factor is not meaningful with an explicit size" (fun () -> spec (box 4L) null "bilinear" null (box true) |> ignore)
                refuses<ArgumentException> "mode 'bicubic' is not supported here" (fun () -> spec null (box 2.0) "bicubic" null null |> ignore)
                refuses<ArgumentException> "size takes one value or two (height, width)" (fun () -> spec (box [ box 1L; box 2L; box 3L ]) null "nearest" null null |> ignore)
                let up = QuantizedUpsample(spec null (box 0.4) "nearest" null null)
                refuses<ArgumentException> "quantized upsample_nearest2d takes a 4-d input [N, C, H, W], got [1, 2, 3]" (fun () -> up.Forward(input (Array.zeroCreate 6) [| 1; 2; 3 |]) |> ignore)
                refuses<ArgumentException> "input and output sizes should be greater than 0, but got input (H: 2, W: 2) output (H: 0, W: 0)" (fun () -> up.Forward(input (Array.zeroCreate 4) [| 1; 1; 2; 2 |]) |> ignore)
                let y = up.Forward(input (Array.init 25 id) [| 1; 1; 5; 5 |])
                Expect.equal (Seq.toList y.Dimensions, y.Scale, y.ZeroPoint) ([ 1; 1; 2; 2 ], 0.1, 3L) "the output keeps the input's qparams"
            }
            test "BatchNorm refuses a rank other than 2 or 3, parameters of another length, a negative eps and an input of another rank or channel count, naming the module" {
                let v (n: int) = Tensor.FromFloat32(ReadOnlySpan(Array.create n 1.0f), n)
                refuses<ArgumentException> "BatchNorm2d and BatchNorm3d, not a batch norm over 1" (fun () -> QuantizedBatchNorm(1, v 3, v 3, v 3, v 3, 1e-5, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "quantized BNReLU2d: the running_var must be float32 of shape [3]" (fun () -> QuantizedBatchNorm(2, v 3, v 3, v 3, v 4, 1e-5, 0.1, 0L, true) |> ignore)
                refuses<ArgumentException> "eps must be finite and not negative" (fun () -> QuantizedBatchNorm(3, v 3, v 3, v 3, v 3, -1.0, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "0..255" (fun () -> QuantizedBatchNorm(2, v 3, v 3, v 3, v 3, 1e-5, 0.1, 256L) |> ignore)
                let bn = QuantizedBatchNorm(2, v 3, v 3, v 3, v 3, 1e-5, 0.1, 0L)
                Expect.equal bn.TypeName "QuantizedBatchNorm2d" "PyTorch's class name"
                refuses<ArgumentException> "quantized BatchNorm2d expects input of shape [N, 3, H, W]" (fun () -> bn.Forward(input (Array.zeroCreate 24) [| 1; 3; 2; 2; 2 |]) |> ignore)
                refuses<ArgumentException> "quantized BatchNorm2d expects input of shape [N, 3, H, W]" (fun () -> bn.Forward(input (Array.zeroCreate 8) [| 1; 2; 2; 2 |]) |> ignore)
            }
            test "LeakyReLU and ELU refuse a non-finite slope or alpha, a bad scale, and an output zero point outside the input's dtype, naming the module" {
                refuses<ArgumentException> "quantized LeakyReLU: negative_slope must be finite" (fun () -> QuantizedLeakyReLU(0.1, 0L, nan) |> ignore)
                refuses<ArgumentException> "quantized ELU: alpha must be finite" (fun () -> QuantizedELU(0.1, 0L, infinity) |> ignore)
                refuses<ArgumentOutOfRangeException> "quantized ELU output: a scale must be positive" (fun () -> QuantizedELU(0.0, 0L) |> ignore)
                let qint8 = QuantizedTensor.Quantize(floatTensor [| 4 |], 0.1, 0L, QuantizedDType.QInt8)
                refuses<ArgumentException> "quantized LeakyReLU output" (fun () -> QuantizedLeakyReLU(0.1, 200L).Forward qint8 |> ignore)
                let perChannel = QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3 |], [| 1; 3 |], [ 0.1 ], [ 0L ], 0, QuantizedDType.QUInt8)
                refuses<ArgumentException> "quantized ELU takes a per-tensor quantized input" (fun () -> QuantizedELU(0.1, 0L).Forward perChannel |> ignore)
            }
            test "LayerNorm refuses an empty normalized_shape, a weight of another shape, a negative eps and an input whose trailing dimensions differ, naming the module" {
                let t (shape: int[]) = Tensor.Zeros shape
                refuses<ArgumentException> "quantized LayerNorm: normalized_shape must be one or more positive sizes" (fun () -> QuantizedLayerNorm([||], null, null, 1e-5, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "the weight must be float32 of shape [4, 5], got Float32 [20]" (fun () -> QuantizedLayerNorm([| 4; 5 |], t [| 20 |], t [| 4; 5 |], 1e-5, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "eps must be finite and not negative" (fun () -> QuantizedLayerNorm([| 5 |], null, null, -1.0, 0.1, 0L) |> ignore)
                let ln = QuantizedLayerNorm([| 4; 5 |], null, null, 1e-5, 0.1, 0L)
                refuses<ArgumentException> "normalises the trailing dimensions [4, 5], got an input of shape [2, 5, 4]" (fun () -> ln.Forward(input (Array.zeroCreate 40) [| 2; 5; 4 |]) |> ignore)
                refuses<ArgumentException> "normalises the trailing dimensions [4, 5], got an input of shape [5]" (fun () -> ln.Forward(input (Array.zeroCreate 5) [| 5 |]) |> ignore)
            }
            test "GroupNorm refuses groups that do not divide the channels, a weight of another shape, and an input of rank 2 or another channel count, as PyTorch does" {
                refuses<ArgumentException> "num_groups (4) must be positive and divide the 6 channels" (fun () -> QuantizedGroupNorm(4, 6, null, null, 1e-5, 0.1, 0L) |> ignore)
                refuses<ArgumentException> "the bias must be float32 of shape [6]" (fun () -> QuantizedGroupNorm(3, 6, Tensor.Zeros [| 6 |], Tensor.Zeros [| 3 |], 1e-5, 0.1, 0L) |> ignore)
                let gn = QuantizedGroupNorm(3, 6, null, null, 1e-5, 0.1, 0L)
                refuses<ArgumentException> "at least one spatial dimension, got [2, 6]" (fun () -> gn.Forward(input (Array.zeroCreate 12) [| 2; 6 |]) |> ignore)
                refuses<ArgumentException> "expects input of shape [N, 6, *spatial]" (fun () -> gn.Forward(input (Array.zeroCreate 8) [| 1; 4; 2 |]) |> ignore)
            }
            test "absurd sizes are refused before any memory is taken" {
                refuses<ArgumentException> "over the limit" (fun () -> QuantizedConv(weight [| 1; 1; 1; 1 |], null, 0.1, 0L, stride = Int32.MaxValue) |> ignore)
                refuses<ArgumentException> "more than" (fun () -> input [| 1 |] [| 65536; 65536; 65536 |] |> ignore)
                refuses<ArgumentException> "over the limit" (fun () -> QuantizedAdaptiveAvgPool2d(struct (1 <<< 30, 1)) |> ignore)
                let big = QuantizedAdaptiveAvgPool2d(struct (1 <<< 24, 1 <<< 24))
                refuses<ArgumentException> "over the limit" (fun () -> big.Forward(input [| 1 |] [| 1; 1; 1 |]) |> ignore)
            }
            test "add, add_relu and max pooling give the same integers on several threads as on one (inputs of many chunks, both dtypes)" {
                let rng = Random 7
                // 2·64·37·41 elements: several of add's chunks and a tail that is not a whole vector.
                let shape = [| 2; 64; 37; 41 |]
                let count = Array.fold (*) 1 shape
                for dtype, lo, hi in [ QuantizedDType.QUInt8, 0, 256; QuantizedDType.QInt8, -128, 128 ] do
                    let q scale zp = QuantizedTensor.FromIntRepr(ReadOnlySpan(Array.init count (fun _ -> rng.Next(lo, hi))), shape, scale, zp, dtype)
                    let a, b = q 0.031 (if lo = 0 then 7L else -3L), q 0.047 (if lo = 0 then 120L else 5L)
                    let f = QFunctional(0.06, (if lo = 0 then 64L else 0L))
                    Expect.equal (f.Add(a, b, 3).IntRepr()) (f.Add(a, b).IntRepr()) $"{dtype} add"
                    Expect.equal (f.AddRelu(a, b, 3).IntRepr()) (f.AddRelu(a, b).IntRepr()) $"{dtype} add_relu"
                    let pool = QuantizedMaxPool2d(struct (3, 3), struct (2, 2), struct (1, 1), struct (1, 1), true)
                    Expect.equal (pool.Forward(a, 3).IntRepr()) (pool.Forward(a).IntRepr()) $"{dtype} max pool"
            }
            test "QFunctional refuses tensors of different shapes or dtypes, and cat mismatched dimensions" {
                let qf = QFunctional(0.1, 0L)
                let a = input [| 1; 2; 3; 4 |] [| 2; 2 |]
                refuses<ArgumentException> "one shape" (fun () -> qf.Add(a, input [| 1; 2; 3; 4 |] [| 4 |]) |> ignore)
                refuses<ArgumentException> "torch.quint8" (fun () -> qf.Mul(a, QuantizedTensor.FromIntRepr(ReadOnlySpan [| 1; 2; 3; 4 |], [| 2; 2 |], 0.1, 0L, QuantizedDType.QInt8)) |> ignore)
                refuses<ArgumentException> "do not broadcast" (fun () -> qf.Mul(a, input [| 1; 2; 3 |] [| 3 |]) |> ignore)
                refuses<ArgumentException> "differ in dimension 1" (fun () -> qf.Cat([| a; input [| 1; 2; 3 |] [| 1; 3 |] |], 0) |> ignore)
                refuses<ArgumentException> "dim 2 is out of range" (fun () -> qf.Cat([| a |], 2) |> ignore)
                refuses<ArgumentException> "at least one tensor" (fun () -> qf.Cat([||], 0) |> ignore)
            }
        ]
    ]
