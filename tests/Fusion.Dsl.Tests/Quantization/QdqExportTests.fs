/// The QDQ export of converted int8 models (QuantizedOnnx.Write) against our own quantized forward: on the PtqFlow
/// fixture models (ptq_fixtures.py: the small ConvNet, the residual block with FloatFunctional add_relu/add/mul/cat,
/// torchvision's quantizable resnet18 at 64x64 after fuse_model()) converted with the x86 and qnnpack qconfigs (the
/// observers fed PyTorch's own float activations, so the qparams are PyTorch's), every written file passes ONNX's
/// checker with full_check; ONNX Runtime (every graph optimisation) fuses every quantized Conv2d into a QLinearConv;
/// each converted Conv2d, Linear and FloatFunctional, run here on the 8-bit inputs ONNX Runtime gave it, is within
/// `maxSteps` of ONNX Runtime's output of it; and the model's output is within `maxSteps` of QuantizedModel's on every
/// element (resnet18: within `resnetEnvelope`, see there). The fractions exactly equal are printed, beside the same
/// numbers against PyTorch's own int8 output where the fixture has it (the small models and resnet18/x86: PyTorch as a
/// second oracle) and for the float-bias form (ONNX Runtime 1.31 quantizes a float bias itself: the same results).
/// The fixtures of the later quantized layers (`newLayerFixtures`: Conv1d/3d, BatchNorm and BNReLU, LeakyReLU, ELU,
/// sigmoid, LayerNorm, GroupNorm, InstanceNorm1d/2d/3d, PReLU, ConvTranspose1d/2d/3d, upsampling) go through the same
/// checks; completeness tests hold every quantized layer type the converter builds to a QDQ form or a stated, tested
/// refusal, and every graph operation the quantized forward runs (upsampling's interpolate among them) to a QDQ form.
module Fusion.Dsl.Tests.Quantization.QdqExportTests

open System
open System.IO
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Onnx
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx
open Fusion.Dsl.Tests.Quantization.PtqFlowTests
open Fusion.Dsl.Onnx.Proto
open Microsoft.ML.OnnxRuntime

/// The most quantization steps ONNX Runtime's output may differ from our quantized forward's on any element (the
/// issue's bound): ONNX Runtime requantizes with its own arithmetic (an int32 bias, QuantizeLinear dividing by the scale
/// where PyTorch multiplies by its reciprocal), so a value on a rounding boundary may land one step away.
let maxSteps = 1

/// The most steps ONNX Runtime's end-to-end output of resnet18 may differ from ours: the fixture's measure of PyTorch's
/// own int8 resnet18 under one-ulp moves of its output scales ("nudged": up to 3 steps, 72% of integers unchanged).
/// ONNX Runtime requantizes with its own float arithmetic (checked layer by layer to `maxSteps` above), and 20
/// convolutions deep a one-step difference on a rounding boundary has grown as that measure shows; the small models
/// are held to `maxSteps` end to end (torchvision's deeper quantizable networks: NetworkTests' `deepQdqSteps`).
let private resnetEnvelope (c: Case) =
    [ for r in c.Json.GetProperty("nudged").EnumerateArray() -> r.GetProperty("worst").GetInt32() ] |> List.max

/// The output as integers of the quantized output's qparams: (y / scale) + zero point, rounded (exact for a
/// DequantizeLinear output, whose values are integer multiples of the scale).
let private integers (y: Tensor) (scale: double) (zeroPoint: int64) =
    y.ToArray() |> Array.map (fun v -> int (Math.Round(float v / scale)) + int zeroPoint)

/// The fraction of elements equal and the largest difference in steps.
let private compare (a: int[]) (b: int[]) =
    let d = Array.map2 (fun (x: int) y -> abs (x - y)) a b
    float (d |> Array.filter ((=) 0) |> Array.length) / float (max 1 d.Length), (if d.Length = 0 then 0 else Array.max d)

/// The quantized tensor the model's DeQuantStub dequantizes last (its output in integers).
let private finalQuantized (q: QuantizedModel) (r: QuantizedForwardResult) =
    match r.QuantizedOutput with
    | null ->
        let path = q.Layers.Values |> Seq.filter (fun l -> l.TypeName = "DeQuantize") |> Seq.map (fun l -> l.Path) |> Seq.exactlyOne
        r.LayerOutputs.[path]
    | o -> o

/// The fixture cases exported here: each model under x86 and qnnpack (resnet18's qnnpack conversion is ours alone,
/// on the activations PyTorch's x86 observers saw, which are the same float values).
let private qdqCases () =
    let all = cases ()
    [ for name in [ "convnet"; "residual"; "resnet18" ] do
        for qc in [ "x86"; "qnnpack" ] do
            match all |> List.tryFind (fun c -> c.Name = $"{name}/{qc}") with
            | Some c -> yield c, true
            | None -> yield { (all |> List.find (fun c -> c.Name = $"{name}/x86")) with Name = $"{name}/{qc}"; QConfig = qc }, false ]

/// ONNX Runtime's session on a file (every graph optimisation, one thread), its optimised graph saved beside it.
let private session (path: string) =
    use options = new SessionOptions(GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1, OptimizedModelFilePath = path + ".optimized.onnx",
                                     LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR)
    new InferenceSession(path, options)

/// The operators of ONNX Runtime's optimised graph of a file, counted (its QDQ fusions show as QLinearConv, QGemm, ...).
let private optimizedOps (path: string) =
    (session path).Dispose()
    ModelProto.Parser.ParseFrom(File.ReadAllBytes(path + ".optimized.onnx")).Graph.Node
    |> Seq.countBy (fun n -> n.OpType) |> Map.ofSeq

/// The upsampling a Resize node of the file computes, read back from the node: its mode and coordinate transformation,
/// and its scales initializer (a scale factor the kernels take) or else the output's size (`outputShape`).
let private upsampleOf (resize: NodeProto) (init: System.Collections.Generic.IDictionary<string, TensorProto>) (outputShape: int[]) =
    let attr name = (resize.Attribute |> Seq.find (fun a -> a.Name = name)).S.ToStringUtf8()
    let bilinear = attr "mode" = "linear"
    let scales =
        if resize.Input.Count > 2 && resize.Input.[2] <> "" then
            let raw = init.[resize.Input.[2]].RawData.ToByteArray()
            Some [| float (BitConverter.ToSingle(raw, 8)); float (BitConverter.ToSingle(raw, 12)) |]
        else None
    Fusion.Dsl.Engine.Interpolation(
        (match scales with Some _ -> null | None -> outputShape.[2..]), Option.toObj scales, (if bilinear then "bilinear" else "nearest"),
        bilinear && attr "coordinate_transformation_mode" = "align_corners", false)
    |> QuantizedUpsample

/// Whether the quantized forward holds the value a DequantizeLinear output reads channels-last, which picks PyTorch's
/// upsampling kernel: a convolution's output is, an upsampling keeps its input's layout, a QuantStub's output is not.
let rec private channelsLast (producer: System.Collections.Generic.IDictionary<string, NodeProto>) (value: string) =
    match producer.TryGetValue value with
    | true, n when n.OpType = "Conv" || n.OpType = "ConvTranspose" -> true
    | true, n when n.OpType = "DequantizeLinear" || n.OpType = "QuantizeLinear" || n.OpType = "Relu" || n.OpType = "Resize" -> channelsLast producer n.Input.[0]
    | _ -> false

/// Each converted Conv2d, Linear and FloatFunctional, and each upsampling, on its own: ONNX Runtime's 8-bit input(s) and output of the layer
/// (the QuantizeLinear values around it, made graph outputs of a copy of the file), and our layer's forward on those
/// same inputs. Returns per layer: path, elements, fraction equal, worst steps; and ONNX Runtime's optimised operators
/// on the copy (to show the layers still ran fused).
let private isolatedLayers (q: QuantizedModel) (path: string) (x: Tensor) =
    let m = ModelProto.Parser.ParseFrom(File.ReadAllBytes path)
    let producer = dict [ for n in m.Graph.Node do for o in n.Output -> o, n ]
    let named = dict [ for n in m.Graph.Node -> n.Name, n ]
    let init = dict [ for t in m.Graph.Initializer -> t.Name, t ]
    /// A DequantizeLinear output: the 8-bit value it reads and its qparams.
    let dequantized (name: string) =
        let dq = producer.[name]
        let zp = init.[dq.Input.[2]]
        dq.Input.[0], float (BitConverter.ToSingle(init.[dq.Input.[1]].RawData.ToByteArray(), 0)),
        (if zp.DataType = 2 then int64 zp.RawData.[0] else int64 (sbyte zp.RawData.[0])),
        (if zp.DataType = 2 then QuantizedDType.QUInt8 else QuantizedDType.QInt8)
    /// The value a one-input layer at `path` reads: the DequantizeLinear output reached walking back from the layer's
    /// QuantizeLinear through its own nodes (named `path/...`, its weight's among them).
    let layerInput (path: string) =
        let rec back (node: NodeProto) =
            [ for i in node.Input do
                match producer.TryGetValue i with
                | true, p when p.OpType = "DequantizeLinear" && not (p.Name.StartsWith(path + "/")) -> yield i
                | true, p -> yield! back p
                | _ -> () ]
        back named.[path + "/QuantizeLinear"] |> List.distinct |> List.exactlyOne
    let layers =
        [ for kv in q.Layers do
            match kv.Value.Module with
            | :? QuantizedConv | :? QuantizedConvTranspose | :? QuantizedPReLU | :? QuantizedLinear | :? QuantizedBatchNorm | :? QuantizedLayerNorm
            | :? QuantizedGroupNorm | :? QuantizedActivation ->
                yield kv.Key, "", [ layerInput kv.Key ], kv.Key + "/QuantizeLinear"
            // A FloatFunctional the forward never calls (mobilenet's skip_add in blocks without a residual) has no node.
            | :? QFunctional when named.ContainsKey(kv.Key + ".activation_post_process/QuantizeLinear") ->
                let out = kv.Key + ".activation_post_process/QuantizeLinear"
                let op = producer.[named.[out].Input.[0]]
                let op, kind = if op.OpType = "Relu" then producer.[op.Input.[0]], "add_relu" else op, op.OpType
                yield kv.Key, kind, List.ofSeq op.Input, out
            | _ -> () ]
        @ [ for n in m.Graph.Node do
              // Upsampling on a quantized tensor: a Resize between its input's DequantizeLinear and its QuantizeLinear.
              if n.OpType = "Resize" && named.ContainsKey(n.Name + "/QuantizeLinear") then
                  yield n.Name, "Resize", [ n.Input.[0] ], n.Name + "/QuantizeLinear" ]
    let wanted = [ for _, _, inputs, out in layers do yield! inputs |> List.map (fun i -> let n, _, _, _ = dequantized i in n); yield out ] |> List.distinct
    for n in wanted do
        m.Graph.Output.Add(ValueInfoProto(Name = n, Type = TypeProto(TensorType = TypeProto.Types.Tensor(ElemType = (if (init.[producer.[n].Input.[2]]).DataType = 2 then 2 else 3)))))
    let copy = path + ".layers.onnx"
    File.WriteAllBytes(copy, Google.Protobuf.MessageExtensions.ToByteArray m)
    use s = session copy
    let input = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float32>(Memory<float32>(x.ToArray()), ReadOnlySpan<int>(x.Shape.ToArray()))
    use results = s.Run([ NamedOnnxValue.CreateFromTensor(s.InputMetadata.Keys |> Seq.head, input) ], wanted)
    let values =
        dict [ for r in results ->
                match r.Value with
                | :? Microsoft.ML.OnnxRuntime.Tensors.Tensor<byte> as t -> r.Name, ([| for v in t -> int v |], t.Dimensions.ToArray())
                | :? Microsoft.ML.OnnxRuntime.Tensors.Tensor<sbyte> as t -> r.Name, ([| for v in t -> int v |], t.Dimensions.ToArray())
                | v -> failwithf "%s is %s" r.Name (v.GetType().Name) ]
    let quantized (dq: string) =
        let n, scale, zp, dtype = dequantized dq
        let ints, dims = values.[n]
        QuantizedTensor.FromIntRepr(ReadOnlySpan ints, dims, scale, zp, dtype)
    let compared =
        [ for layer, kind, inputs, out in layers ->
            let ins = inputs |> List.map quantized
            let ours =
                match (match q.Layers.TryGetValue layer with | true, l -> l.Module | _ -> null), kind with
                | :? QuantizedConv as c, _ -> c.Forward ins.[0]
                | :? QuantizedConvTranspose as c, _ -> c.Forward ins.[0]
                | :? QuantizedPReLU as p, _ -> p.Forward ins.[0]
                | :? QuantizedLinear as l, _ -> l.Forward ins.[0]
                | :? QuantizedBatchNorm as b, _ -> b.Forward ins.[0]
                | :? QuantizedLayerNorm as n, _ -> n.Forward ins.[0]
                | :? QuantizedGroupNorm as g, _ -> g.Forward ins.[0]
                | :? QuantizedActivation as a, _ -> a.Forward ins.[0]
                | :? QFunctional as f, "Add" -> f.Add(ins.[0], ins.[1])
                | :? QFunctional as f, "add_relu" -> f.AddRelu(ins.[0], ins.[1])
                | :? QFunctional as f, "Mul" -> f.Mul(ins.[0], ins.[1])
                | :? QFunctional as f, "Concat" -> f.Cat(ins, int (producer.[named.[out].Input.[0]].Attribute |> Seq.find (fun a -> a.Name = "axis")).I)
                | _ when kind = "Resize" -> (upsampleOf named.[layer] init (snd values.[out])).Forward(ins.[0], channelsLast producer named.[layer].Input.[0])
                | _ -> failwithf "%s: no isolated check for %s" layer kind
            let theirs, _ = values.[out]
            let f, w = compare theirs (ours.IntRepr())
            layer, theirs.Length, f, w ]
    compared, optimizedOps copy

/// Exports a fixture case's conversion in QDQ form and holds ONNX Runtime to it: full_check, every quantized Conv2d
/// fused into a QLinearConv, every isolated layer within `maxSteps`, the output within `bound` steps (numbers printed).
let internal exportAndCompare (c: Case) (hasPyTorch: bool) (bound: int) =
    let q, _ = ourFlow PyTorchActivations c
    let x = npy c (c.Json.GetProperty "input")
    let r = q.Run x
    let yq = finalQuantized q r
    let ours = yq.IntRepr()
    let dir, cleanup = OnnxSupport.tempDir ()
    use _ = cleanup
    let path = Path.Combine(dir, "q.onnx")
    QuantizedOnnx.Write(q, x.Shape.ToArray(), path)
    let floatBias = Path.Combine(dir, "float-bias.onnx")
    QuantizedOnnx.Write(q, x.Shape.ToArray(), floatBias, null, Fusion.Dsl.Onnx.Export.QdqBias.Float)
    OnnxSupport.checkModels [ path; floatBias ]
    let ort = OnnxSupport.ortRun path x
    Expect.sequenceEqual (ort.Shape.ToArray()) (Seq.toArray yq.Dimensions) "ONNX Runtime's output shape is ours"
    let fraction, worst = compare (integers ort yq.Scale yq.ZeroPoint) ours
    let fFraction, fWorst = compare (integers (OnnxSupport.ortRun floatBias x) yq.Scale yq.ZeroPoint) ours
    let pytorch =
        if hasPyTorch then
            let (e, w) = compare (integers ort yq.Scale yq.ZeroPoint) (integers (npy c (c.Json.GetProperty "output")) yq.Scale yq.ZeroPoint)
            sprintf "; against PyTorch's int8 output %.5f equal, worst %d steps" e w
        else "; PyTorch has no qnnpack conversion of it in the fixtures"
    // Layer by layer, each on ONNX Runtime's own inputs to it: differences that do not come from upstream.
    let layers, layerOps = isolatedLayers q path x
    let layerElements = layers |> List.sumBy (fun (_, n, _, _) -> n)
    let layerEqual = (layers |> List.sumBy (fun (_, n, f, _) -> f * float n)) / float layerElements
    let layerWorst = layers |> List.map (fun (_, _, _, w) -> w) |> List.max
    let ops = optimizedOps path
    let fused (ops: Map<string, int>) =
        String.Join(", ", [ for op in [ "QLinearConv"; "QGemm"; "QLinearMatMul"; "QLinearAdd"; "QLinearMul"; "QLinearConcat"; "QLinearGlobalAveragePool"; "QLinearAveragePool"; "Conv"; "Gemm"; "MatMul"; "Add"; "Mul"; "Concat" ] do
                              match ops.TryFind op with Some n -> yield sprintf "%s %d" op n | None -> () ])
    // Transposed convolutions are not counted: ONNX Runtime 1.31 runs their QDQ form as DequantizeLinear, ConvTranspose, QuantizeLinear.
    let converted = q.Layers.Values |> Seq.filter (fun l -> l.Module :? QuantizedConv) |> Seq.length
    Expect.equal (ops.TryFind "QLinearConv" |> Option.defaultValue 0) converted (sprintf "%s: ONNX Runtime fuses every quantized convolution into a QLinearConv (%s)" c.Name (fused ops))
    printfn "Quantization.Qdq %s: %d output elements, ONNX Runtime (int32 bias) %.5f equal to QuantizedModel, worst %d steps; float bias %.5f equal, worst %d%s; each of %d layers on ONNX Runtime's inputs: %d elements, %.5f equal, worst %d; ONNX Runtime's optimised graph: %s (with the layers' 8-bit values as outputs: %s)"
        c.Name ours.Length fraction worst fFraction fWorst pytorch layers.Length layerElements layerEqual layerWorst (fused ops) (fused layerOps)
    for l, n, f, w in layers do
        if w > maxSteps then printfn "  %s %s: %d elements, %.5f equal, worst %d" c.Name l n f w
    Expect.isLessThanOrEqual layerWorst maxSteps (sprintf "%s: every layer, on ONNX Runtime's inputs, within %d step of ONNX Runtime's output" c.Name maxSteps)
    Expect.isLessThanOrEqual worst bound (sprintf "%s: ONNX Runtime's output within %d step(s) of QuantizedModel's on every element (%.5f equal)" c.Name bound fraction)

/// The PtqFlow fixture models (ptq_fixtures.py) of the quantized layers added after Conv2d and Linear, each converted by
/// PyTorch 1.13 under the qconfigs its fixtures use (x86 and qnnpack; ConvTranspose only under qnnpack, since PyTorch
/// refuses its per-channel weights under the others), with what each holds.
let private newLayerFixtures =
    let both = [ "x86"; "qnnpack" ]
    [ "conv1dnet", "ConvReLU1d with a folded BatchNorm, a grouped strided dilated ConvReLU1d, a depthwise Conv1d", both
      "conv3dnet", "ConvReLU3d with a folded BatchNorm, a grouped strided Conv3d, a 1x1x1 ConvReLU3d", both
      "bnnet", "BatchNorm2d, BNReLU2d, BNReLU3d, BatchNorm3d", both
      "leakyelunet", "LeakyReLU, ELU, nn.Sigmoid on a quantized tensor", both
      "layernormnet", "LayerNorm with and without elementwise affine", both
      "groupnormnet", "GroupNorm with and without affine, InstanceNorm2d", both
      "instancenormnet", "InstanceNorm3d with random affine parameters, InstanceNorm1d, GroupNorm of 2 groups with random affine parameters on [N, C, L]", both
      "prelunet", "PReLU with one slope and with one per channel (slopes quantized as PyTorch's convert does)", both
      "upsamplenet", "nn.Upsample nearest by scale factor, F.interpolate bilinear by size, nn.UpsamplingBilinear2d (align_corners) by scale factor, F.interpolate nearest by scale factor 1.5, each after a convolution", both
      "upsampleformsnet", "F.interpolate bilinear by scale factor on the QuantStub's output, nn.UpsamplingNearest2d by size, bilinear by size with align_corners, nearest by size, bilinear with a recomputed scale factor", both
      "convtransposenet", "ConvTranspose2d strided, and grouped and dilated without bias, after a ConvReLU2d", [ "qnnpack" ]
      "convtranspose1d3dnet", "ConvTranspose1d strided and grouped, ConvTranspose3d strided and padded", [ "qnnpack" ] ]

/// The most steps ONNX Runtime's output of layernormnet may differ from ours end to end (every layer on ONNX Runtime's
/// own inputs is still held to `maxSteps`): its LayerNorm over fc1's 16 features divides by their deviation, so a one-step
/// rounding difference upstream (ONNX Runtime's LayerNormalization and QGemm round in their own float arithmetic) comes
/// out of the normalisation larger, and fc2 sums 16 such values. Measured under x86: 2 steps on 2 of 8 output elements,
/// as far from PyTorch's own int8 output as from ours (ours equals PyTorch's there).
let private normChainSteps = 2

/// The most steps ONNX Runtime's output of upsamplenet may differ from ours end to end (every convolution and every
/// upsampling on ONNX Runtime's own inputs is still held to `maxSteps`): four convolutions with an upsampling after each
/// of the first three, so a one-step rounding difference of a convolution is copied by the upsampling to several
/// neighbours, and the next convolution (conv4: 3x3 over 12 channels, 108 taps) sums them. Measured under qnnpack on a
/// random batch of 5: 2 steps (0.972 of 25,740 integers equal), every layer on ONNX Runtime's inputs within 1; on the
/// fixture's own input and under x86, 1. upsampleformsnet (two convolutions among five upsamplings) and each
/// upsampling form alone (`qdqSteps`) are held to `maxSteps`.
let private upsampleChainSteps = 2

/// The end-to-end bound of a new-layer fixture: `maxSteps`, except the LayerNorm chain (see `normChainSteps`) and
/// upsamplenet's convolutions after upsamplings (see `upsampleChainSteps`).
let private endToEndSteps (name: string) =
    match name with
    | "layernormnet" -> normChainSteps
    | "upsamplenet" -> upsampleChainSteps
    | _ -> maxSteps

let private conv (cin: int) (cout: int) = Conv.Create(2, cin, cout, [| 3 |], padding = ConvPadding.Explicit 1) :> Module
let private stub name = UserModule.Create(name, ModuleChildren.Empty) :> Module

/// A layer that PyTorch runs on quantized tensors, as the test model builds it: its extra modules (by name) and the
/// graph step from the quantized value to the layer's quantized output.
type private QuantizedStep = { Name: string; Modules: (string * Module) list; Step: Fusion.Dsl.Graphs.GraphBuilder -> Fusion.Dsl.Graphs.GraphValue -> Fusion.Dsl.Graphs.GraphValue }

/// The layers issue 24 asked for in QDQ form, as converted modules, float modules on quantized tensors and graph calls.
let private qdqSteps : QuantizedStep list =
    let call name (g: Fusion.Dsl.Graphs.GraphBuilder) v = g.Call(name, v)
    let size = [| box 11L; box 13L |]
    [ { Name = "Hardswish (converted, own qparams)"; Modules = [ "act", Activation.Create ActivationKind.Hardswish :> Module ]; Step = call "act" }
      { Name = "ReLU6 (converted, input's qparams)"; Modules = [ "act", Activation.Create ActivationKind.ReLU6 :> Module ]; Step = call "act" }
      { Name = "relu6 (function)"; Modules = []; Step = fun g v -> g.Function("relu6", v) }
      { Name = "Hardsigmoid (float module, fixed qparams)"; Modules = [ "hs", Activation.Create ActivationKind.Hardsigmoid :> Module ]; Step = call "hs" }
      { Name = "sigmoid (function, fixed qparams)"; Modules = []; Step = fun g v -> g.Function("sigmoid", v) }
      { Name = "max_pool2d(3, stride 2, padding 1) (function)"; Modules = []; Step = fun g v -> g.Function("max_pool2d", v, [| 3 |], [| 2 |], [| 1 |]) }
      { Name = "AvgPool2d(3, stride 2, padding 1)"; Modules = [ "pool", AvgPool2d.Create([| 3 |], [| 2 |], [| 1 |]) :> Module ]; Step = call "pool" }
      { Name = "avg_pool2d(2)"; Modules = []; Step = fun g v -> g.Function("avg_pool2d", v, [| 2 |]) }
      { Name = "mean([2, 3], keepdim)"; Modules = []; Step = fun g v -> g.Function("mean", v, [| 2; 3 |], true) }
      { Name = "chunk(2, dim 1)[1]"; Modules = []; Step = fun g v -> g.Function("getitem", g.Method("chunk", v, 2L, 1L), 1L) }
      { Name = "transpose(1, 3)"; Modules = []; Step = fun g v -> g.Method("transpose", v, 1L, 3L) }
      { Name = "nn.Upsample(scale_factor=2) nearest"; Modules = [ "up", OnnxSupport.upsampling "Upsample" null (box 2.0) "nearest" null ]; Step = call "up" }
      { Name = "nn.UpsamplingBilinear2d(scale_factor=2) (align_corners)"; Modules = [ "up", OnnxSupport.upsampling "UpsamplingBilinear2d" null (box 2.0) "bilinear" (box true) ]; Step = call "up" }
      { Name = "interpolate(size=(11, 13)) nearest"; Modules = []; Step = fun g v -> g.Function("interpolate", v, size, null, "nearest") }
      { Name = "interpolate(scale_factor=1.5) bilinear"; Modules = []; Step = fun g v -> g.Function("interpolate", v, null, 1.5, "bilinear", false) }
      { Name = "interpolate(size=(11, 13)) bilinear, align_corners"; Modules = []; Step = fun g v -> g.Function("interpolate", v, size, null, "bilinear", true) }
      { Name = "interpolate(scale_factor=1.3, recompute_scale_factor) bilinear"; Modules = []; Step = fun g v -> g.Function("interpolate", v, null, 1.3, "bilinear", false, true) } ]

/// quant -> [c: Conv2d 4->4 ->] the step -> dequant, as a traced model.
let private stepModel (afterConv: bool) (s: QuantizedStep) =
    let children = [ yield "quant", stub "QuantStub"; if afterConv then yield "c", conv 4 4
                     yield! s.Modules; yield "dequant", stub "DeQuantStub" ]
    let g = Fusion.Dsl.Graphs.GraphBuilder()
    let q = g.Call("quant", g.Input())
    let v = if afterConv then g.Call("c", q) else q
    UserModule.Create("Net", ModuleChildren.Create([| for n, m in children -> struct (n, m) |]), g.Output(g.Call("dequant", s.Step g v))) :> Module

/// The model converted with a qconfig on seeded calibration batches of [2, 4, 8, 8].
let private convertedStep (qc: string) (model: Module) =
    let o = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault qc))
    EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, [ for s in 1..3 -> Fusion.Dsl.FSharp.Tensor.randn s [ 2; 4; 8; 8 ] ]))

/// `x` snapped to the QuantStub's grid (quantized and dequantized with its qparams): ONNX Runtime's QuantizeLinear then
/// gives the very integers ours does, so the layer after it sees the same input in both and its output is compared alone.
let private snapped (q: QuantizedModel) (x: Tensor) =
    let l = q.Layers.["quant"]
    QuantizedTensor.Quantize(x, l.Scale.Value, l.ZeroPoint.Value, l.DType.Value).Dequantize()

/// ONNX Runtime's output of a QDQ file against QuantizedModel's on `x`, in the output's integers: fraction equal, worst steps.
let internal ortAgainstOurs (q: QuantizedModel) (path: string) (x: Tensor) =
    let yq = finalQuantized q (q.Run x)
    let ort = OnnxSupport.ortRun path x
    Expect.sequenceEqual (ort.Shape.ToArray()) (Seq.toArray yq.Dimensions) "ONNX Runtime's output shape is ours"
    let f, w = compare (integers ort yq.Scale yq.ZeroPoint) (yq.IntRepr())
    yq.Count, f, w

[<Tests>]
let tests =
    testList "Quantization" [
        testList "Qdq" [
            for name in [ "convnet"; "residual"; "resnet18" ] do
                for qc in [ "x86"; "qnnpack" ] do
                    let endToEnd = if name = "resnet18" then "within PyTorch's own one-ulp-scale envelope" else sprintf "within %d step" maxSteps
                    yield test (sprintf "%s/%s: the QDQ file passes ONNX's full check, ONNX Runtime fuses it, every layer on ONNX Runtime's inputs is within %d step of ours and the output %s of QuantizedModel's on every element (fractions printed)" name qc maxSteps endToEnd) {
                        needTorch ()
                        OnnxSupport.requireChecker ()
                        let c, hasPyTorch = qdqCases () |> List.find (fun (c, _) -> c.Name = $"{name}/{qc}")
                        exportAndCompare c hasPyTorch (if name = "resnet18" then resnetEnvelope c else maxSteps)
                    }
            for name, what, qconfigs in newLayerFixtures do
                for qc in qconfigs do
                    yield test (sprintf "%s/%s (%s): the QDQ file passes ONNX's full check, every layer on ONNX Runtime's inputs is within %d step of QuantizedModel's and the output within %d on every element; written with a symbolic batch, it runs batches 1 and 5 within the same bound (fractions printed)" name qc what maxSteps (endToEndSteps name)) {
                        needTorch ()
                        OnnxSupport.requireChecker ()
                        let c = cases () |> List.find (fun c -> c.Name = $"{name}/{qc}")
                        exportAndCompare c true (endToEndSteps name)
                        // As fusion quantize --out writes it: the batch symbolic (reshapes by x.size(0) keep it so).
                        let q, _ = ourFlow PyTorchActivations c
                        let shape = (npy c (c.Json.GetProperty "input")).Shape.ToArray()
                        let dir, cleanup = OnnxSupport.tempDir ()
                        use _ = cleanup
                        let path = Path.Combine(dir, "dynamic.onnx")
                        QuantizedOnnx.Write(q, shape, path, OnnxExportOptions(DynamicBatch = true))
                        OnnxSupport.checkModels [ path ]
                        for batch in [ 1; 5 ] do
                            let n, f, w = ortAgainstOurs q path (Fusion.Dsl.FSharp.Tensor.randn (80 + batch) [ yield batch; yield! shape.[1..] ])
                            printfn "Quantization.Qdq %s/%s dynamic batch %d: %d elements, ONNX Runtime %.5f equal to QuantizedModel, worst %d steps" name qc batch n f w
                            Expect.isLessThanOrEqual w (endToEndSteps name) (sprintf "batch %d: within %d step(s) on every element" batch (endToEndSteps name))
                    }
            for qc in [ "x86"; "qnnpack" ] do
                yield test (sprintf "%s: Hardswish, ReLU6, Hardsigmoid, sigmoid, max and average pooling, mean, chunk, transpose and upsampling (nearest and bilinear, by size and by scale factor, align_corners both ways) are written in QDQ form; each file passes ONNX's full check and ONNX Runtime is within %d step of QuantizedModel on the layer's own input and after a convolution (fractions printed)" qc maxSteps) {
                    OnnxSupport.requireChecker ()
                    let dir, cleanup = OnnxSupport.tempDir ()
                    use _ = cleanup
                    let x = Fusion.Dsl.FSharp.Tensor.randn 17 [ 2; 4; 8; 8 ]
                    let results =
                        [ for s in qdqSteps do
                            for afterConv in [ false; true ] do
                                let q = convertedStep qc (stepModel afterConv s)
                                let path = Path.Combine(dir, sprintf "step%d.onnx" (Directory.GetFiles(dir).Length))
                                QuantizedOnnx.Write(q, [| 2; 4; 8; 8 |], path)
                                // Directly after the QuantStub the input is snapped to its grid: the layer alone is compared.
                                let input = if afterConv then x else snapped q x
                                let n, f, w = ortAgainstOurs q path input
                                yield s.Name, afterConv, path, n, f, w ]
                    OnnxSupport.checkModels [ for _, _, p, _, _, _ in results -> p ]
                    for name, afterConv, _, n, f, w in results do
                        printfn "Quantization.Qdq %s %s%s: %d elements, ONNX Runtime %.5f equal to QuantizedModel, worst %d steps" qc name (if afterConv then " after a Conv2d" else " on the QuantStub's integers") n f w
                    for name, afterConv, _, _, f, w in results do
                        Expect.isLessThanOrEqual w maxSteps (sprintf "%s %s (after a conv: %b): within %d step on every element (%.5f equal)" qc name afterConv maxSteps f)
                }
            yield test "with DynamicBatch the QDQ file's batch is symbolic: ONNX Runtime runs batches 1 and 8 of a file written for batch 2, within 1 step of QuantizedModel on each" {
                OnnxSupport.requireChecker ()
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                // Every new layer in one network: conv, hardswish, pooling, chunk, transpose, mean.
                let chain =
                    { Name = "chain"
                      Modules = [ "act", Activation.Create ActivationKind.Hardswish :> Module; "pool", AvgPool2d.Create([| 3 |], [| 2 |], [| 1 |]) :> Module ]
                      Step = fun g v ->
                        let piece = g.Function("getitem", g.Method("chunk", g.Call("pool", g.Call("act", v)), 2L, 1L), 0L)
                        g.Function("mean", g.Method("transpose", piece, 1L, 2L), [| 3 |], false) }
                let q = convertedStep "x86" (stepModel true chain)
                let path = Path.Combine(dir, "dynamic.onnx")
                QuantizedOnnx.Write(q, [| 2; 4; 8; 8 |], path, OnnxExportOptions(DynamicBatch = true))
                OnnxSupport.checkModels [ path ]
                let m = ModelProto.Parser.ParseFrom(File.ReadAllBytes path)
                Expect.equal m.Graph.Input.[0].Type.TensorType.Shape.Dim.[0].DimParam "batch" "the input's first dimension is symbolic"
                Expect.equal m.Graph.Output.[0].Type.TensorType.Shape.Dim.[0].DimParam "batch" "so is the output's"
                for batch in [ 1; 8 ] do
                    let n, f, w = ortAgainstOurs q path (Fusion.Dsl.FSharp.Tensor.randn (40 + batch) [ batch; 4; 8; 8 ])
                    printfn "Quantization.Qdq dynamic batch %d: %d elements, ONNX Runtime %.5f equal to QuantizedModel, worst %d steps" batch n f w
                    Expect.isLessThanOrEqual w maxSteps (sprintf "batch %d: within %d step on every element" batch maxSteps)
            }
            yield test "fusion quantize --out X.onnx writes a QDQ file with a symbolic batch that ONNX Runtime runs at the fixture's batch, 1 and 8 within 1 step of the API's int8 model; a refused layer writes nothing" {
                needTorch ()
                let c = cases () |> List.find (fun c -> c.Name = "residual/x86")
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                let model = file c (c.Json.GetProperty("model").GetString() |> nonNull)
                let batches = batchFolder c dir
                let out = Path.Combine(dir, "q.onnx")
                let code, stdout, stderr = fusion [ "quantize"; model; "--qconfig"; "x86"; "--calibration"; batches; "--out"; out ]
                Expect.equal code 0 (sprintf "quantize succeeds: %s%s" stdout stderr)
                Expect.stringContains stdout "QDQ" "says what it wrote"
                Expect.isFalse (File.Exists(Path.Combine(dir, "q.json"))) "no model-format file beside it"
                let api, _ = ourFlow OurEngine c
                let x = npy c (c.Json.GetProperty "input")
                let yq = finalQuantized api (api.Run x)
                let fraction, worst = compare (integers (OnnxSupport.ortRun out x) yq.Scale yq.ZeroPoint) (yq.IntRepr())
                printfn "Quantization.Qdq CLI residual/x86: ONNX Runtime %.5f equal to the API's int8 model, worst %d steps" fraction worst
                Expect.isLessThanOrEqual worst maxSteps "within 1 step of the API's model"
                // The file's batch is symbolic: batches of 1 and 8 run too, within the same bound.
                for batch in [ 1; 8 ] do
                    let xb = Fusion.Dsl.FSharp.Tensor.randn (60 + batch) [ yield batch; yield! x.Shape.ToArray().[1..] ]
                    let n, f, w = ortAgainstOurs api out xb
                    printfn "Quantization.Qdq CLI residual/x86 batch %d: %d elements, ONNX Runtime %.5f equal, worst %d steps" batch n f w
                    Expect.isLessThanOrEqual w maxSteps (sprintf "batch %d: within 1 step of the API's model" batch)
            }
            yield test "a Linear+ReLU on a rank-3 input (written as MatMul and Add, not Gemm) and a plain Linear, x86 (per-channel weights) and qnnpack (per-tensor): ONNX Runtime within 1 step of QuantizedModel" {
                OnnxSupport.requireChecker ()
                let seqOf (items: (string * Module) list) = Sequential.Create(ModuleChildren.Create(items |> List.map (fun (n, m) -> struct (n, m)) |> List.toArray)) :> Module
                let model =
                    Fusion.Dsl.Fuser.FuseModules(
                        seqOf [ "quant", stub "QuantStub"; "fc1", Linear.Create(6, 8) :> Module; "relu", Activation.Create ActivationKind.ReLU :> Module
                                "fc2", Linear.Create(8, 5) :> Module; "dequant", stub "DeQuantStub" ], [ "fc1"; "relu" ])
                let data = [ for s in 1..3 -> Fusion.Dsl.FSharp.Tensor.randn s [ 2; 7; 6 ] ]
                let x = Fusion.Dsl.FSharp.Tensor.randn 11 [ 2; 7; 6 ]
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                for qc in [ "x86"; "qnnpack" ] do
                    let o = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault qc))
                    let q = EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, data))
                    Expect.equal q.Layers.["fc1"].TypeName "QuantizedLinearReLU" "the fused pair is a LinearReLU"
                    Expect.isTrue ((q.Run x).LayerOutputs.ContainsKey "fc2") "a Sequential root whose first child is the QuantStub runs quantized, not in the float engine"
                    let path = Path.Combine(dir, qc + ".onnx")
                    QuantizedOnnx.Write(q, x.Shape.ToArray(), path)
                    OnnxSupport.checkModels [ path ]
                    let yq = finalQuantized q (q.Run x)
                    let fraction, worst = compare (integers (OnnxSupport.ortRun path x) yq.Scale yq.ZeroPoint) (yq.IntRepr())
                    printfn "Quantization.Qdq rank-3 Linear/%s: %d output elements, ONNX Runtime %.5f equal to QuantizedModel, worst %d steps" qc (yq.Count) fraction worst
                    Expect.isLessThanOrEqual worst maxSteps (sprintf "%s: within %d step on every element" qc maxSteps)
            }
            yield test "quantized nearest upsampling of a one-channel input keeps PyTorch's quantized rows in QDQ (none of the float NHWC kernel's special cases; an unchanged size copies): ONNX Runtime's integers equal QuantizedModel's" {
                OnnxSupport.requireChecker ()
                let seqOf (items: (string * Module) list) = Sequential.Create(ModuleChildren.Create(items |> List.map (fun (n, m) -> struct (n, m)) |> List.toArray)) :> Module
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                // 1.25 on 2 x 4: 2 x 5, rows 0, 0 in the quantized kernel (the float NHWC kernel would copy rows 0, 1);
                // 1.25 on 2 x 2: 2 x 2, a copy in the quantized kernel (floor(o / 1.25) would repeat row 0).
                for name, shape in [ "2x4", [ 1; 1; 2; 4 ]; "2x2", [ 1; 1; 2; 2 ] ] do
                    let model = seqOf [ "quant", stub "QuantStub"; "up", OnnxSupport.upsampling "Upsample" null (box 1.25) "nearest" null; "dequant", stub "DeQuantStub" ]
                    let data = [ for s in 1..3 -> Fusion.Dsl.FSharp.Tensor.randn s shape ]
                    let x = Fusion.Dsl.FSharp.Tensor.randn 11 shape
                    let o = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault "x86"))
                    let q = EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, data))
                    let path = Path.Combine(dir, name + ".onnx")
                    QuantizedOnnx.Write(q, x.Shape.ToArray(), path)
                    OnnxSupport.checkModels [ path ]
                    let yq = finalQuantized q (q.Run x)
                    let fraction, worst = compare (integers (OnnxSupport.ortRun path x) yq.Scale yq.ZeroPoint) (yq.IntRepr())
                    Expect.equal worst 0 (sprintf "%s: every integer equal (%.3f equal)" name fraction)
            }
            yield test "a part kept float (None qconfig after the DeQuantStub) is exported float: ONNX Runtime's output equals QuantizedModel's within the float tolerance of OnnxSupport.OrtTol" {
                OnnxSupport.requireChecker ()
                let children =
                    [| struct ("quant", stub "QuantStub"); struct ("c", conv 3 4); struct ("dequant", stub "DeQuantStub"); struct ("tail", conv 4 2)
                       struct ("act", Activation.Create ActivationKind.SiLU :> Module) |]
                let model = Sequential.Create(ModuleChildren.Create children) :> Module
                let o = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault "x86").WithPath("tail", null).WithPath("act", null))
                let q = EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, [ for s in 1..2 -> Fusion.Dsl.FSharp.Tensor.randn s [ 2; 3; 6; 6 ] ]))
                Expect.isFalse (q.Layers.ContainsKey "tail") "the tail stays float"
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                let x = Fusion.Dsl.FSharp.Tensor.randn 5 [ 2; 3; 6; 6 ]
                let path = Path.Combine(dir, "mixed.onnx")
                QuantizedOnnx.Write(q, x.Shape.ToArray(), path)
                OnnxSupport.checkModels [ path ]
                let ours = q.Forward x
                let err = (OnnxSupport.ortRun path x).MaxAbsDiff ours
                let tol = OnnxSupport.OrtTol.abs + OnnxSupport.OrtTol.rel * ours.MaxAbs()
                printfn "Quantization.Qdq float tail: max |ONNX Runtime - QuantizedModel| = %g (tolerance %g)" err tol
                Expect.isLessThanOrEqual err tol "the float tail computes what our float engine computes on the dequantized values"
            }
            yield test "a quantized LayerNorm at opset 16 (ONNX's LayerNormalization is opset 17), a quantized layer type without a QDQ form and a converted FloatFunctional called as a module are refused naming the path, the type and what to do, and nothing is written" {
                needTorch ()
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                let path = Path.Combine(dir, "refused.onnx")
                let c = cases () |> List.find (fun c -> c.Name = "layernormnet/x86")
                let q, _ = ourFlow PyTorchActivations c
                let x = npy c (c.Json.GetProperty "input")
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(q, x.Shape.ToArray(), path, OnnxExportOptions(Opset = 16)))
                Expect.equal (e.ModulePath, e.ModuleType) ("ln", "LayerNorm") "names the quantized LayerNorm's path and type"
                Expect.stringContains e.Message "opset 17" "says which opset has it"
                Expect.isFalse (File.Exists path) "nothing is written"
                // A layer type the exporter has no entry for (as a quantized module added to the converter later would be),
                // in place of the LayerNorm.
                let unknown = QuantizedModel(q.FloatModel, q.Layers.SetItem("ln", QuantizedLayer.GroupNorm("ln", "QuantizedSomethingNew", QuantizedGroupNorm(1, 6, null, null, 1e-5, 0.1, 0L))))
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(unknown, x.Shape.ToArray(), path))
                Expect.equal e.ModulePath "ln" "names the path"
                Expect.stringContains e.Message "the quantized layer QuantizedSomethingNew has no QDQ form" "and the type"
                Expect.stringContains e.Message "None qconfig" "and what to do"
                Expect.isFalse (File.Exists path) "nothing is written"
                // A converted FloatFunctional called as a module: its stated refusal (Refused), as the quantized forward refuses it.
                let ff = UserModule.Create("FloatFunctional", ModuleChildren.Create([| struct ("activation_post_process", Identity.Create() :> Module) |])) :> Module
                // Calibrated with a graph that leaves it uncalled (the float engine cannot call it either), then put in a
                // graph that calls it as a module.
                let net (callFf: bool) =
                    let g = GraphBuilder()
                    let y = g.Call("c", g.Call("quant", g.Input()))
                    let graph = g.Output(g.Call("dequant", (if callFf then g.Call("ff", y) else y)))
                    UserModule.Create("Net", ModuleChildren.Create([| struct ("quant", stub "QuantStub"); struct ("c", conv 3 4); struct ("ff", ff); struct ("dequant", stub "DeQuantStub") |]), graph) :> Module
                let o = EagerQuantization.Prepare(net false, QConfigMapping.ForAll(QConfig.GetDefault "x86"))
                let converted = EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, [ Fusion.Dsl.FSharp.Tensor.randn 3 [ 1; 3; 5; 5 ] ]))
                Expect.equal converted.Layers.["ff"].TypeName "QFunctional" "the FloatFunctional is converted"
                let qf = QuantizedModel(net true, converted.Layers)
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(qf, [| 1; 3; 5; 5 |], path))
                Expect.equal e.ModulePath "ff" "names the path"
                Expect.stringContains e.Message Fusion.Dsl.Onnx.Export.QdqExporter.Refused.["QFunctional"] "with the stated reason"
                Expect.isFalse (File.Exists path) "nothing is written"
            }
            yield test "every quantized layer type the converter builds (QuantizedStateDict's table of them, and every layer Convert made from the PtqFlow fixtures) has a QDQ form or a stated refusal that a test here checks" {
                needTorch ()
                let all = Set.ofSeq QuantizedStateDict.LayerTypes
                let emitted = Set.ofList [ for c in cases () do if not (c.Name.StartsWith "resnet18") then for l in (fst (ourFlow PyTorchActivations c)).Layers.Values -> l.TypeName ]
                Expect.isEmpty (Set.difference emitted all) "every type Convert made on the fixtures is in the table"
                let written = Set.ofSeq Fusion.Dsl.Onnx.Export.QdqExporter.Layers.Keys
                let refused = Set.ofSeq Fusion.Dsl.Onnx.Export.QdqExporter.Refused.Keys
                let missing = [ for t in all do if not (written.Contains t || refused.Contains t) then yield t ]
                Expect.isEmpty missing (sprintf "quantized layer types without a QDQ form or a stated refusal in QdqExporter: %s" (String.Join(", ", missing)))
                // Each stated refusal is checked by the refusal test above.
                Expect.equal refused (Set.ofList [ "QFunctional" ]) "the refusals the test above checks"
                printfn "Quantization.Qdq: %d quantized layer types, %d written in QDQ form, refused: %s; Convert made %d of them on the fixtures" all.Count (Set.intersect all written).Count (String.Join(", ", refused)) emitted.Count
            }
            yield test "every graph operation the quantized forward runs (QuantizedInterpreter's table, interpolate among them) has a QDQ form in QdqExporter" {
                let written = Set.ofSeq Fusion.Dsl.Onnx.Export.QdqExporter.QuantizedOperations
                // floordiv takes Python integers only (x.size(1) // 2), never a quantized tensor: the float exporter computes it.
                let pythonOnly = Set.ofList [ "floordiv" ]
                let run = Set.ofSeq QuantizedInterpreter.OperationNames
                let missing = Set.difference run (Set.union written pythonOnly)
                Expect.isEmpty missing (sprintf "operations the quantized forward runs without a QDQ form: %s" (String.Join(", ", missing)))
                Expect.isTrue (run.Contains "interpolate") "the table this checks holds upsampling"
                printfn "Quantization.Qdq: %d graph operations run quantized, all written in QDQ form but %s (Python integers only)" run.Count (String.Join(", ", pythonOnly))
            }
            yield test "a quantized tensor meeting a module or operation without a quantized form is refused naming its path and type, and nothing is written" {
                let dir, cleanup = OnnxSupport.tempDir ()
                use _ = cleanup
                let x86 = QConfigMapping.ForAll(QConfig.GetDefault "x86")
                let data = [ Tensor.Generate((fun i -> float32 (i % 7) - 3.0f), [| 2; 3; 5; 5 |]) ]
                let convert (m: Module) =
                    let o = EagerQuantization.Prepare(m, x86)
                    EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, data))
                // A SiLU kept float (None qconfig) but reached by a quantized tensor: no DeQuantStub before it.
                let children =
                    ModuleChildren.Create([| struct ("quant", stub "QuantStub"); struct ("c", conv 3 4); struct ("s", Activation.Create ActivationKind.SiLU :> Module); struct ("dequant", stub "DeQuantStub") |])
                let sigmoid = Sequential.Create(children) :> Module
                let q =
                    let o = EagerQuantization.Prepare(sigmoid, x86.WithPath("s", null))
                    EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, data))
                let path = Path.Combine(dir, "refused.onnx")
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(q, [| 1; 3; 5; 5 |], path))
                Expect.equal (e.ModulePath, e.ModuleType) ("s", "SiLU") "names the module's path and type"
                Expect.stringContains e.Message "receives a quantized tensor" "says why"
                Expect.isFalse (File.Exists path) "nothing is written"
                // A float `+` of two quantized tensors in a graph, not a FloatFunctional's add.
                let g = GraphBuilder()
                let input = g.Input()
                let qx = g.Call("quant", input)
                let y = g.Call("c", qx)
                let sum = g.Function("add", y, y)
                let graph = g.Output(g.Call("dequant", sum))
                let plus = UserModule.Create("Net", ModuleChildren.Create([| struct ("quant", stub "QuantStub"); struct ("c", conv 3 4); struct ("dequant", stub "DeQuantStub") |]), graph) :> Module
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(convert plus, [| 1; 3; 5; 5 |], path))
                Expect.stringContains e.Message "add" "names the operation"
                Expect.isFalse (File.Exists path) "nothing is written"
                // Indexing a quantized tensor itself (not the list a chunk returns) has no quantized form.
                let gi = GraphBuilder()
                let first = gi.Function("getitem", gi.Call("c", gi.Call("quant", gi.Input())), 0L)
                let indexed = UserModule.Create("Net", ModuleChildren.Create([| struct ("quant", stub "QuantStub"); struct ("c", conv 3 4); struct ("dequant", stub "DeQuantStub") |]), gi.Output(gi.Call("dequant", first))) :> Module
                let o = EagerQuantization.Prepare(indexed, x86)
                let qi = EagerQuantization.Convert(o, EagerQuantization.Calibrate(o, data))
                let e = Support.throwsOf<OnnxExportException> (fun () -> QuantizedOnnx.Write(qi, [| 1; 3; 5; 5 |], path))
                Expect.stringContains e.Message "getitem" "names the operation"
                Expect.isFalse (File.Exists path) "nothing is written"
            }
        ]
    ]
