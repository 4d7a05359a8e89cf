/// A converted model's state_dict in PyTorch's format (QuantizedStateDict), with PyTorch 1.13 as the oracle, on the
/// PtqFlow fixtures (ptq_fixtures.py: small eager models and torchvision's quantizable resnet18, each converted by
/// PyTorch, whose `torch.save(q.state_dict())` and converted model it saves). Both ways: PyTorch's file loads into our
/// converted model, which then holds PyTorch's qparams exactly and computes PyTorch's integer outputs; our file loads
/// with `load_state_dict(strict=True)` into PyTorch's converted model (quantized_state_dict_check.py), PyTorch runs it,
/// and the state_dict PyTorch saves from it reads back here bit for bit. Then files that disagree with the model.
module Fusion.Dsl.Tests.Quantization.QuantizedStateDictTests

open System
open System.Collections.Generic
open System.IO
open System.IO.Compression
open System.Text
open System.Text.Json
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Quantization.PtqFlowTests

let private checker = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "quantized_state_dict_check.py")

let private str (e: JsonElement) (name: string) = e.GetProperty(name).GetString() |> nonNull

/// quantized_state_dict_check.py on a case: PyTorch's converted model loads `ours` strict, runs, and saves `resaved`.
let private pytorchLoads (c: Case) (ours: string) (resaved: string) (report: string) =
    Support.exec Support.python3 [ checker; file c (str c.Json "float_model"); c.QConfig; file c (str c.Json "state_dict"); ours; file c (str c.Json "input"); resaved; report ] (Path.GetDirectoryName ours |> nonNull)

/// Our converted model of a case, uncalibrated: only its structure matters to Load. Prepared with the case's qconfig,
/// since a transposed convolution takes none with per-channel weights (x86's).
let private template (c: Case) =
    let model = ModelFile.Read(file c (c.Json.GetProperty("model").GetString() |> nonNull))
    let observed = EagerQuantization.Prepare(model, QConfigMapping.ForAll(qconfigOf c.QConfig))
    EagerQuantization.Convert(observed, observed.InitialState)

/// Every parameter of every layer, as text that shows each bit (scales as their float64 bits).
let private describe (q: QuantizedModel) =
    [ for kv in q.Layers |> Seq.sortBy (fun kv -> kv.Key) do
        let l = kv.Value
        let bits (d: float) = BitConverter.DoubleToInt64Bits d
        yield sprintf "%s %s scale=%A zp=%A" l.Path l.TypeName (Option.ofNullable l.Scale |> Option.map bits) (Option.ofNullable l.ZeroPoint)
        match l.Weight with
        | null -> ()
        | w ->
            yield sprintf "%s weight %A axis=%A scales=%A zps=%A" l.Path (Seq.toList w.Dimensions) w.Axis [ for s in w.Scales -> bits s ] (Seq.toList w.ZeroPoints)
            yield sprintf "%s weight ints %A" l.Path (w.IntRepr())
        match l.Bias with
        | null -> ()
        | b -> yield sprintf "%s bias %A" l.Path [ for v in b.ToArray() -> BitConverter.SingleToInt32Bits v ] ]

/// The fraction of equal integers and the worst difference in steps.
let private agreement (a: int[]) (b: float32[]) =
    let d = Array.map2 (fun (x: int) (y: float32) -> abs (x - int y)) a b
    float (d |> Array.filter ((=) 0) |> Array.length) / float (max d.Length 1), (if d.Length = 0 then 0 else Array.max d)

let private pytorchToOurs =
    test "PyTorch's torch.save(qmodel.state_dict()) loads into our converted model: every layer holds PyTorch's scale and zero point exactly, and every layer's integer output equals PyTorch's" {
        needTorch ()
        let all = cases ()
        Expect.isGreaterThanOrEqual all.Length 11 "the PtqFlow cases (convnet, residual, resnet18)"
        let problems = ResizeArray<string>()
        for c in all do
          // PyTorch 1.13 keeps a quantized Hardswish's qparams outside its state_dict, and load_state_dict leaves the
          // module's own: such a file loads into a model converted from the same calibration, as in PyTorch.
          let hasHardswish = (template c).Layers.Values |> Seq.exists (fun l -> QuantizedStateDict.QParamsOutsideStateDict.Contains l.TypeName)
          let t = if hasHardswish then fst (ourFlow PyTorchActivations c) else template c
          do
            let q = QuantizedStateDict.Load(t, file c (str c.Json "state_dict"))
            for l in c.Json.GetProperty("layers").EnumerateArray() do
                let path = str l "path"
                let ours = q.Layers.[path]
                match l.TryGetProperty "scale" with
                | true, s ->
                    if ours.Scale.Value <> s.GetDouble() || ours.ZeroPoint.Value <> l.GetProperty("zero_point").GetInt64() then
                        problems.Add(sprintf "%s %s: (%.17g, %d), PyTorch's (%.17g, %d)" c.Name path ours.Scale.Value ours.ZeroPoint.Value (s.GetDouble()) (l.GetProperty("zero_point").GetInt64()))
                | _ -> ()
                match l.TryGetProperty "weight_scales" with
                | true, ws ->
                    if [ for v in ws.EnumerateArray() -> v.GetDouble() ] <> List.ofSeq ours.Weight.Scales then problems.Add(sprintf "%s %s: weight scales differ" c.Name path)
                | _ -> ()
            let result = q.Run(npy c (c.Json.GetProperty "input"))
            let mutable n, worstFraction, worstSteps = 0, 1.0, 0
            for o in c.Json.GetProperty("layer_outputs").EnumerateObject() do
                let expected = npy c (o.Value.GetProperty "file")
                let fraction, steps = agreement (result.LayerOutputs.[o.Name].IntRepr()) (expected.ToArray())
                n <- n + expected.Count
                worstFraction <- min worstFraction fraction
                worstSteps <- max worstSteps steps
                if fraction < exactFraction || steps > maxSteps then
                    problems.Add(sprintf "%s %s: %.5f of the integers equal PyTorch's (need %g), worst %d steps (limit %d)" c.Name o.Name fraction exactFraction steps maxSteps)
            printfn "%s: %d layers loaded from PyTorch's file; %d layer-output integers, least exact fraction of a layer %.5f, worst %d steps" c.Name q.Layers.Count n worstFraction worstSteps
        if problems.Count > 0 then failtestf "%d disagreements:\n%s" problems.Count (String.Join("\n", Seq.truncate 30 problems))
    }

let private oursToPytorch =
    test "our QuantizedStateDict.Save loads with load_state_dict(strict=True) into PyTorch's converted model, PyTorch runs it as it runs its own state, and the state_dict it saves back reads here bit for bit, keys in the same order" {
        needTorch ()
        let dir = Directory.CreateTempSubdirectory("fusion-qsd-").FullName
        try
            let problems = ResizeArray<string>()
            for c in cases () do
                // Calibrated on PyTorch's own float activations: scales within 1 ulp of PyTorch's (PtqFlowTests).
                let q, _ = ourFlow PyTorchActivations c
                let name = c.Name.Replace("/", "_")
                let ours, resaved, report = Path.Combine(dir, name + ".pt"), Path.Combine(dir, name + ".resaved.pt"), Path.Combine(dir, name + ".json")
                QuantizedStateDict.Save(q, ours)
                let code, stdout, stderr = pytorchLoads c ours resaved report
                if code <> 0 then problems.Add(sprintf "%s: PyTorch refused our file (exit %d): %s%s" c.Name code stdout (stderr.Trim().Split('\n') |> Array.last))
                else
                    let r = JsonDocument.Parse(File.ReadAllText report).RootElement
                    let exact, worst = r.GetProperty("exact").GetDouble(), r.GetProperty("worst").GetInt32()
                    // resnet18's int8 output moves under one-ulp scale moves; PyTorch's own spread under them is the bound.
                    let leastExact, mostSteps =
                        match c.Json.TryGetProperty "nudged" with
                        | true, n -> [ for x in n.EnumerateArray() -> x.GetProperty("exact").GetDouble() ] |> List.min, [ for x in n.EnumerateArray() -> x.GetProperty("worst").GetInt32() ] |> List.max
                        | _ -> exactFraction, maxSteps
                    if exact < leastExact || worst > mostSteps then
                        problems.Add(sprintf "%s: PyTorch's int8 output with our state equals its own for %.5f (need %.5f), worst %d steps (limit %d)" c.Name exact leastExact worst mostSteps)
                    let back = QuantizedStateDict.Load(q, resaved)
                    if describe back <> describe q then problems.Add(sprintf "%s: PyTorch's re-saved state_dict differs from what we wrote" c.Name)
                    let keys (s: TorchValueState) = [ for kv in s.Items -> kv.Key ]
                    let theirKeys = keys (TorchCheckpoint.ReadQuantized resaved)
                    if keys (QuantizedStateDict.Entries(q, ours)) <> theirKeys then problems.Add(sprintf "%s: our keys are not PyTorch's, in its order: %A" c.Name theirKeys)
                    printfn "%s: %d keys loaded strict by PyTorch (%d equal to PyTorch's own calibrated state bit for bit); its int8 output with our state equals its own for %.5f of %d integers, worst %d steps; re-saved file equal bit for bit"
                        c.Name theirKeys.Length (r.GetProperty("keys_equal").GetInt32()) exact (r.GetProperty("elements").GetInt32()) worst
            if problems.Count > 0 then failtestf "%d problems:\n%s" problems.Count (String.Join("\n", problems))
        finally
            Directory.Delete(dir, true)
    }

/// A case's state as we write it, with one entry changed, written to a file, and the refusal it gets.
let private hostileIn (caseName: string) (name: string) (key: string) (says: string) (change: List<KeyValuePair<string, obj>> -> unit) =
    test (sprintf "a file with %s is refused naming the file and '%s'" name key) {
        needTorch ()
        let c = cases () |> List.find (fun c -> c.Name = caseName)
        let q, _ = ourFlow PyTorchActivations c
        let dir = Directory.CreateTempSubdirectory("fusion-qsd-bad-").FullName
        try
            let path = Path.Combine(dir, "bad.pt")
            let state = QuantizedStateDict.Entries(q, path)
            let items = List<KeyValuePair<string, obj>>(state.Items)
            change items
            TorchCheckpoint.WriteValues(path, TorchValueState(items, state.Versions))
            let e = Support.throwsOf<ModelFormatException> (fun () -> QuantizedStateDict.Load(q, path) |> ignore)
            Expect.equal e.FileName path "the message names the file"
            Expect.equal e.Key key "and the key"
            Expect.stringContains e.Message says "and the problem"
            Expect.isFalse (e.Message.Contains '\n' || e.Message.Contains "(Parameter '") "in one line, without .NET's parameter name"
        finally
            Directory.Delete(dir, true)
    }

/// The convnet/x86 case's state with one entry changed, and the refusal it gets.
let private hostile = hostileIn "convnet/x86"

let private replace (key: string) (f: obj -> obj) (items: List<KeyValuePair<string, obj>>) =
    let i = items.FindIndex(fun kv -> kv.Key = key)
    if i < 0 then failtestf "no key %s" key
    items.[i] <- KeyValuePair(key, f items.[i].Value)

let private qtensor (f: TorchQTensor -> TorchQTensor) (v: obj) = f (v :?> TorchQTensor) :> obj
let private packed (f: obj[] -> obj[]) (v: obj) = f (v :?> obj[]) :> obj
let private scalar (v: float32) (_: obj) = Tensor.FromFloat32(ReadOnlySpan [| v |]) :> obj
let private scalarInt (v: int64) (_: obj) = Tensor.ScalarInt64 v :> obj

let private hostileCases =
    [ hostile "a missing key" "fc2.scale" "is missing" (fun items -> items.RemoveAll(fun kv -> kv.Key = "fc2.scale") |> ignore)
      hostile "an unexpected key" "extra.weight" "is not a key of this converted model" (fun items -> items.Add(KeyValuePair("extra.weight", Tensor.Zeros [| 2 |] :> obj)))
      hostile "a conv weight of another shape" "conv1.weight" "has shape [8, 3, 3, 2]" (replace "conv1.weight" (qtensor (fun w ->
          TorchQTensor(w.Signed, [| 8; 3; 3; 2 |], Array.zeroCreate 144, w.Scales, w.ZeroPoints, w.Axis))))
      hostile "a quint8 weight" "conv1.weight" "is quint8" (replace "conv1.weight" (qtensor (fun w -> TorchQTensor(false, w.Shape, w.Values, w.Scales, w.ZeroPoints, w.Axis))))
      hostile "per-channel scales of the wrong length" "conv1.weight" "needs 8 scales" (replace "conv1.weight" (qtensor (fun w ->
          TorchQTensor(w.Signed, w.Shape, w.Values, w.Scales.[1..], w.ZeroPoints.[1..], w.Axis))))
      hostile "a NaN weight scale" "dw.weight" "positive and finite" (replace "dw.weight" (qtensor (fun w -> TorchQTensor(w.Signed, w.Shape, w.Values, Array.map (fun _ -> nan) w.Scales, w.ZeroPoints, w.Axis))))
      hostile "a zero output scale" "conv1.scale" "positive and finite" (replace "conv1.scale" (scalar 0.0f))
      hostile "a NaN output scale" "fc1.scale" "positive and finite" (replace "fc1.scale" (scalar nanf))
      hostile "a negative Quantize scale" "quant.scale" "positive and finite" (replace "quant.scale" (fun _ -> Tensor.FromFloat32(ReadOnlySpan [| -0.5f |], 1) :> obj))
      hostile "a Quantize zero point of the wrong shape" "quant.zero_point" "shape [1]" (replace "quant.zero_point" (scalarInt 3L))
      hostile "an output zero point out of range" "conv2.zero_point" "quint8's range 0..255" (replace "conv2.zero_point" (scalarInt 300L))
      hostile "a float zero point" "conv2.zero_point" "Int64 tensor" (replace "conv2.zero_point" (scalar 3.0f))
      hostile "no bias (None) where the model has one" "conv2.bias" "is None, but the model's bias is a float32 tensor of shape [12]" (replace "conv2.bias" (fun _ -> null))
      hostile "packed params dtype quint8" "fc1._packed_params.dtype" "torch.qint8" (replace "fc1._packed_params.dtype" (fun _ -> TorchDType("quint8") :> obj))
      hostile "packed params that are not (weight, bias)" "fc1._packed_params._packed_params" "not the packed params" (replace "fc1._packed_params._packed_params" (packed (fun p -> [| p.[0] |])))
      hostile "a packed bias of the wrong length" "fc2._packed_params._packed_params" "shape [10]" (replace "fc2._packed_params._packed_params" (packed (fun p -> [| p.[0]; Tensor.Zeros [| 9 |] |])))
      hostile "a packed weight that disagrees with the model" "fc2._packed_params._packed_params" "has shape [10, 15]" (replace "fc2._packed_params._packed_params" (packed (fun p ->
          let w = p.[0] :?> TorchQTensor
          [| TorchQTensor(w.Signed, [| 10; 15 |], Array.zeroCreate 150, w.Scales, w.ZeroPoints, w.Axis); p.[1] |])))
      // The 2-d form a 1-d weight takes inside the kernel is not PyTorch's Conv1d weight.
      hostileIn "conv1dnet/x86" "a Conv1d weight in 2-d form" "conv1.weight" "has shape [8, 3, 1, 5], but the model's is [8, 3, 5]" (replace "conv1.weight" (qtensor (fun w ->
          TorchQTensor(w.Signed, [| 8; 3; 1; 5 |], w.Values, w.Scales, w.ZeroPoints, w.Axis))))
      hostileIn "conv3dnet/x86" "a Conv3d bias of the wrong length" "conv2.bias" "shape [8]" (replace "conv2.bias" (fun _ -> Tensor.Zeros [| 7 |] :> obj))
      hostileIn "bnnet/x86" "a BatchNorm2d running_var of the wrong length" "bn_in.running_var" "but QuantizedBatchNorm2d keeps a Float32 tensor of shape [3]" (replace "bn_in.running_var" (fun _ -> Tensor.Zeros [| 4 |] :> obj))
      hostileIn "leakyelunet/x86" "a negative LeakyReLU scale" "lrelu.scale" "positive and finite" (replace "lrelu.scale" (scalar -0.1f))
      hostileIn "layernormnet/x86" "a LayerNorm weight of another shape" "ln.weight" "keeps a Float32 tensor of shape [6, 6, 6]" (replace "ln.weight" (fun _ -> Tensor.Zeros [| 6; 36 |] :> obj))
      hostileIn "layernormnet/x86" "a weight for a LayerNorm without elementwise affine" "ln2.weight" "is not a key of this converted model" (fun items -> items.Add(KeyValuePair("ln2.weight", Tensor.Zeros [| 16 |] :> obj)))
      hostileIn "groupnormnet/x86" "a GroupNorm bias of the wrong length" "gn.bias" "keeps a Float32 tensor of shape [6]" (replace "gn.bias" (fun _ -> Tensor.Zeros [| 5 |] :> obj))
      hostileIn "bnnet/x86" "a BNReLU3d without num_batches_tracked" "bn3.num_batches_tracked" "is missing" (fun items -> items.RemoveAll(fun kv -> kv.Key = "bn3.num_batches_tracked") |> ignore) ]

/// A copy of the torch.save zip `src` at `dst` with each entry's bytes passed through `change` (by entry name).
let private rewrite (src: string) (dst: string) (change: string -> byte[] -> byte[]) =
    use input = ZipFile.OpenRead src
    use output = ZipFile.Open(dst, ZipArchiveMode.Create)
    for e in input.Entries do
        use ms = new MemoryStream()
        (use s = e.Open() in s.CopyTo ms)
        use o = output.CreateEntry(e.FullName, CompressionLevel.NoCompression).Open()
        o.Write(change e.FullName (ms.ToArray()))

/// `bytes` with every occurrence of the ASCII text `a` replaced by `b`.
let private replaceAscii (a: string) (b: string) (bytes: byte[]) =
    Encoding.Latin1.GetBytes(Encoding.Latin1.GetString(bytes).Replace(a, b))

/// PyTorch's file of convnet/x86 with one byte-level change, and what the quantized reader says about it.
let private crafted (name: string) (says: string) (change: string -> byte[] -> byte[]) =
    test (sprintf "a crafted file (%s) is refused by the quantized reader without running anything" name) {
        needTorch ()
        let c = cases () |> List.find (fun c -> c.Name = "convnet/x86")
        let dir = Directory.CreateTempSubdirectory("fusion-qsd-crafted-").FullName
        try
            let path = Path.Combine(dir, "crafted.pt")
            rewrite (file c (str c.Json "state_dict")) path change
            let e = Support.throwsOf<ModelFormatException> (fun () -> QuantizedStateDict.Load(template c, path) |> ignore)
            Expect.equal e.FileName path "the message names the file"
            Expect.stringContains e.Message says "and the problem"
        finally
            Directory.Delete(dir, true)
    }

let private pickleOnly (f: byte[] -> byte[]) (name: string) (bytes: byte[]) = if name.EndsWith "/data.pkl" then f bytes else bytes

let private craftedCases =
    [ crafted "a qscheme outside the two PyTorch 1.13 pickles: per_channel_affine_float_qparams" "asks for the global 'torch.per_channel_affine_float_qparams'"
          (pickleOnly (replaceAscii "torch\nper_channel_affine\n" "torch\nper_channel_affine_float_qparams\n"))
      crafted "_rebuild_qtensor on a CharStorage" "views storage '2' of type torch.CharStorage, not torch.QInt8Storage or torch.QUInt8Storage"
          (pickleOnly (replaceAscii "torch\nQInt8Storage\n" "torch\nCharStorage\n"))
      crafted "float storages relabelled QInt8Storage" "storage '0' declares 1 QInt8Storage elements (1 bytes), but q_state_dict/data/0 holds 4 bytes"
          (pickleOnly (replaceAscii "torch\nFloatStorage\n" "torch\nQInt8Storage\n"))
      crafted "a quantized weight's storage cut short" "holds 100 bytes"
          (fun name bytes -> if name.EndsWith "/data/2" then bytes.[..99] else bytes)
      crafted "os.system in place of _rebuild_qtensor" "asks for the global 'os.system'"
          (pickleOnly (replaceAscii "torch._utils\n_rebuild_qtensor\n" "os\nsystem\n")) ]

/// A model whose middle convolution is kept float (a None qconfig between DeQuantStub and QuantStub), as PyTorch keeps it.
let private partlyFloat () =
    let stub name = UserModule.Create(name, ModuleChildren.Empty) :> Module
    let conv () = Conv.Create(2, 3, 3, [| 3 |], padding = ConvPadding.Explicit 1) :> Module
    let model = Sequential.Create(ModuleChildren.Create([| struct ("quant", stub "QuantStub"); struct ("c1", conv ()); struct ("dq", stub "DeQuantStub");
                                                          struct ("c2", conv ()); struct ("q2", stub "QuantStub"); struct ("c3", conv ()); struct ("dequant", stub "DeQuantStub") |]))
    let observed = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault "x86").WithPath("c2", null))
    EagerQuantization.Convert(observed, EagerQuantization.Calibrate(observed, [ Fusion.Dsl.FSharp.Tensor.randn 3 [ 2; 3; 6; 6 ] ]))

/// A small converted model with every quantized layer type the format table has (Quantize, Conv, ConvReLU through a
/// fused ReLU, Linear, DeQuantize), calibrated on seeded data: the base the fuzzer mutates, no PyTorch needed.
let private everyType () =
    let model =
        EagerQuantization.QuantWrapper(
            Sequential.Create(ModuleChildren.Create([| struct ("c", Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit 1) :> Module)
                                                       struct ("flat", Flatten.Create() :> Module)
                                                       struct ("fc", Linear.Create(4 * 5 * 5, 3) :> Module) |])))
    let observed = EagerQuantization.Prepare(model, QConfigMapping.ForAll(QConfig.GetDefault "x86"))
    EagerQuantization.Convert(observed, EagerQuantization.Calibrate(observed, [ for s in 1..2 -> Fusion.Dsl.FSharp.Tensor.randn s [ 2; 3; 5; 5 ] ]))

/// Mutated copies of a quantized state_dict (bytes of the pickle flipped, inserted or cut, a storage changed) end in a
/// model or the reader's own refusal, within the fuzzers' bounds.
let private fuzz =
    test "mutated quantized state_dicts end in a model or a ModelFormatException, within bounds (no torch needed)" {
        let seed = Fusion.Dsl.Tests.Fuzz.FuzzSupport.seed 29
        let n = Fusion.Dsl.Tests.Fuzz.FuzzSupport.envInt "FUSION_FUZZ_QPT_CASES" 400
        let q = everyType ()
        let dir = Directory.CreateTempSubdirectory("fusion-qsd-fuzz-").FullName
        try
            let basePath = Path.Combine(dir, "base.pt")
            QuantizedStateDict.Save(q, basePath)
            let rng = Random seed
            let mutable loaded, refused = 0, 0
            let failures =
                [ for i in 1 .. n do
                    let r = Random(rng.Next())
                    let path = Path.Combine(dir, "case.pt")
                    if File.Exists path then File.Delete path
                    let mutable what = ""
                    // Half the cases change the pickle, half the storages' bytes in place (values, scales, zero points).
                    let inPickle = r.Next 2 = 0
                    rewrite basePath path (fun name bytes ->
                        let pickle = name.EndsWith "/data.pkl"
                        if (inPickle && pickle) || (not inPickle && name.Contains "/data/" && r.Next 3 = 0) then
                            let b = ResizeArray bytes
                            for _ in 1 .. r.Next(1, 4) do
                                if b.Count > 0 then
                                    let at = r.Next b.Count
                                    match (if inPickle then r.Next 4 else 3) with
                                    | 0 -> b.Insert(at, byte (r.Next 256)); what <- what + sprintf "%s: insert at %d; " name at
                                    | 1 when not pickle || r.Next 4 = 0 -> b.RemoveRange(at, b.Count - at); what <- what + sprintf "%s: cut at %d; " name at
                                    | _ -> b.[at] <- byte (r.Next 256); what <- what + sprintf "%s: byte %d := %d; " name at b.[at]
                            b.ToArray()
                        else bytes)
                    let outcome =
                        Fusion.Dsl.Tests.Fuzz.FuzzSupport.bounded (256L <<< 20) (fun () ->
                            try
                                QuantizedStateDict.Load(q, path) |> ignore
                                loaded <- loaded + 1
                            with :? ModelFormatException -> refused <- refused + 1; reraise ())
                    match outcome with
                    | Some f -> yield sprintf "case %d (seed %d) [%s]: %s" i seed what f
                    | None -> () ]
            printfn "fuzz: %d quantized .pt cases (seed %d): %d refused with ModelFormatException, %d loaded" n seed refused loaded
            Expect.isEmpty failures (sprintf "%d of %d mutated files escaped the reader's errors or a bound:\n%s" failures.Length n (String.Join("\n", failures |> List.truncate 20)))
        finally
            Directory.Delete(dir, true)
    }

[<Tests>]
let tests =
    testList "Quantization" [
        testList "StateDict" [
            yield pytorchToOurs
            yield oursToPytorch
            for t in hostileCases do yield t
            for t in craftedCases do yield t
            yield fuzz
            yield test "a file saved from another converted model is refused, naming a key it lacks or the first one the model lacks" {
                needTorch ()
                let convnet, residual = (cases () |> List.find (fun c -> c.Name = "convnet/x86")), (cases () |> List.find (fun c -> c.Name = "residual/x86"))
                let e = Support.throwsOf<ModelFormatException> (fun () -> QuantizedStateDict.Load(template convnet, file residual (str residual.Json "state_dict")) |> ignore)
                Expect.isNotNull e.Key "a key is named"
                Expect.stringContains e.Message "conv1" "the first quantized layer of convnet that the residual file fits differently"
            }
            yield test "a module kept float (None qconfig) is written with its float tensors under its own keys and read back from them" {
                let q = partlyFloat ()
                let dir = Directory.CreateTempSubdirectory("fusion-qsd-float-").FullName
                try
                    let path = Path.Combine(dir, "q.pt")
                    QuantizedStateDict.Save(q, path)
                    let keys = [ for kv in QuantizedStateDict.Entries(q, path).Items -> kv.Key ]
                    Expect.equal keys [ "quant.scale"; "quant.zero_point"; "c1.weight"; "c1.bias"; "c1.scale"; "c1.zero_point"; "c2.weight"; "c2.bias";
                                        "q2.scale"; "q2.zero_point"; "c3.weight"; "c3.bias"; "c3.scale"; "c3.zero_point" ] "PyTorch's keys: c2 float, the rest quantized"
                    let back = QuantizedStateDict.Load(q, path)
                    Expect.equal (describe back) (describe q) "the quantized layers read back bit for bit"
                    // The float convolution takes the file's tensors.
                    let state = TorchCheckpoint.ReadQuantized path
                    let doubled = Tensor.FromFloat32(ReadOnlySpan(((ModulePath.Get(q.FloatModel, "c2") :?> Conv).Weight.ToArray() |> Array.map (fun v -> v * 2.0f))), 3, 3, 3, 3)
                    let path2 = Path.Combine(dir, "q2.pt")
                    TorchCheckpoint.WriteValues(path2, TorchValueState([ for kv in state.Items -> if kv.Key = "c2.weight" then KeyValuePair(kv.Key, doubled :> obj) else kv ], state.Versions))
                    let loaded = QuantizedStateDict.Load(q, path2)
                    Expect.equal ((ModulePath.Get(loaded.FloatModel, "c2") :?> Conv).Weight.ToArray()) (doubled.ToArray()) "the float weight comes from the file"
                    let x = Fusion.Dsl.FSharp.Tensor.randn 5 [ 1; 3; 6; 6 ]
                    Expect.notEqual (loaded.Forward(x).ToArray()) (q.Forward(x).ToArray()) "and the forward uses it"
                    TorchCheckpoint.WriteValues(path2, TorchValueState([ for kv in state.Items do if kv.Key <> "c2.bias" then yield kv ], state.Versions))
                    let e = Support.throwsOf<ModelFormatException> (fun () -> QuantizedStateDict.Load(q, path2) |> ignore)
                    Expect.equal e.Key "c2.bias" "a missing float tensor is named"
                finally
                    Directory.Delete(dir, true)
            }
            yield test "the float state_dict reader refuses PyTorch's quantized file at _rebuild_qtensor, and the quantized reader admits no other global (torch.float16 as a dtype)" {
                needTorch ()
                let c = cases () |> List.find (fun c -> c.Name = "convnet/x86")
                let theirs = file c (str c.Json "state_dict")
                let e = Support.throwsOf<ModelFormatException> (fun () -> StateDictFile.Read theirs |> ignore)
                Expect.stringContains e.Message "torch._utils._rebuild_qtensor" "the float reader names the global it refuses"
                let dir = Directory.CreateTempSubdirectory("fusion-qsd-global-").FullName
                try
                    let path = Path.Combine(dir, "f16.pt")
                    TorchCheckpoint.WriteValues(path, TorchValueState([ KeyValuePair("fc1._packed_params.dtype", TorchDType("float16") :> obj) ], []))
                    let e = Support.throwsOf<ModelFormatException> (fun () -> QuantizedStateDict.Load(template c, path) |> ignore)
                    Expect.stringContains e.Message "asks for the global 'torch.float16', which a quantized state_dict does not need" "refused at the GLOBAL opcode"
                finally
                    Directory.Delete(dir, true)
            }
            yield test "fusion quantize --out q.pt writes a file PyTorch loads strict; fusion run --quantized-state-dict runs PyTorch's file as Load does, and refuses a bad one in one line writing nothing" {
                needTorch ()
                let c = cases () |> List.find (fun c -> c.Name = "residual/x86")
                let fusion (args: string list) = Support.exec "dotnet" (Path.Combine(AppContext.BaseDirectory, "fusion.dll") :: args) Support.repoRoot
                let dir = Directory.CreateTempSubdirectory("fusion-qsd-cli-").FullName
                try
                    let model = file c (str c.Json "model")
                    let batch = file c (c.Json.GetProperty("batches").[0].GetString() |> nonNull)
                    let out = Path.Combine(dir, "q.pt")
                    let code, stdout, stderr = fusion [ "quantize"; model; "--qconfig"; "x86"; "--calibration"; batch; "--out"; out ]
                    Expect.equal code 0 (sprintf "quantize succeeds: %s%s" stdout stderr)
                    let input = file c (str c.Json "input")
                    let code, stdout, stderr = pytorchLoads c out (Path.Combine(dir, "re.pt")) (Path.Combine(dir, "r.json"))
                    Expect.equal code 0 (sprintf "PyTorch loads the command's file with strict=True: %s%s" stdout stderr)
                    let theirs = file c (str c.Json "state_dict")
                    let y = Path.Combine(dir, "y.npy")
                    let code, stdout, stderr = fusion [ "run"; model; "--quantized-state-dict"; theirs; "--input"; input; "--out"; y ]
                    Expect.equal code 0 (sprintf "run takes PyTorch's file: %s%s" stdout stderr)
                    Expect.equal (Npy.Read(y).ToArray()) (QuantizedStateDict.Load(template c, theirs).Forward(Npy.Read input).ToArray()) "the output is Load's int8 forward"
                    let bad = Path.Combine(dir, "bad.pt")
                    let state = TorchCheckpoint.ReadQuantized theirs
                    TorchCheckpoint.WriteValues(bad, TorchValueState([ for kv in state.Items -> if kv.Key = "stem.scale" then KeyValuePair(kv.Key, Tensor.FromFloat32(ReadOnlySpan [| -1.0f |]) :> obj) else kv ], state.Versions))
                    let y2 = Path.Combine(dir, "y2.npy")
                    let code, _, stderr = fusion [ "run"; model; "--quantized-state-dict"; bad; "--input"; input; "--out"; y2 ]
                    Expect.equal code 1 "refused"
                    Expect.stringContains stderr (bad + ": stem.scale: the scale is -1") "naming the file and the key"
                    Expect.equal (stderr.Trim().Split('\n').Length) 1 "in one line"
                    Expect.isFalse (File.Exists y2) "nothing is written"
                    // A quantized Hardswish's qparams are not in PyTorch's state_dict, and run's template is never
                    // calibrated: the command refuses rather than run it with made-up qparams.
                    let act = cases () |> List.find (fun c -> c.Name = "actnet/x86")
                    let y3 = Path.Combine(dir, "y3.npy")
                    let actFile = file act (str act.Json "state_dict")
                    let code, _, stderr =
                        fusion [ "run"; file act (str act.Json "model"); "--quantized-state-dict"; actFile; "--input"; file act (str act.Json "input"); "--out"; y3 ]
                    Expect.equal code 1 "a model with a quantized Hardswish is refused"
                    Expect.stringContains stderr (actFile + ": cannot restore the quantized Hardswish at 'hswish'") "naming the file and the layer"
                    Expect.equal (stderr.Trim().Split('\n').Length) 1 "in one line"
                    Expect.isFalse (File.Exists y3) "nothing is written"
                finally
                    Directory.Delete(dir, true)
            }
        ]
    ]
