/// Quantization-aware training (FakeQuantize, QConfig.GetDefaultQat, EagerQat) against PyTorch 1.13: qat_fixtures.py
/// (beside this file) runs PyTorch's fake-quantize modules and small QAT models at test time; every case is replayed here.
module Fusion.Dsl.Tests.Quantization.QatTests

open System
open System.Collections.Generic
open System.Text.Json
open System.IO
open Expecto
open Fusion.Dsl.Tensors
open Fusion.Dsl.IO
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Quantization.PtqFlowTests

let private generator = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "qat_fixtures.py")

let private fixtures = fixturesFrom generator "fusion-qat-"

/// The QAT forward's outputs may differ from PyTorch's by this many quantization steps of the output fake-quantize
/// module (its scale), except for `flipFraction` of the elements. Our float engine's convolutions differ from PyTorch's
/// (oneDNN) in the last bits, so the moving-average extrema, and with them the fake-quantize scales, can differ by an
/// ulp or two (measured: up to 3 ulps after 3 steps), which moves a fake-quantized value k * scale by k ulps of the
/// scale. Measured worst: 2.1e-5 steps (residual/x86), every other case bit-equal.
let forwardTolSteps = 1e-3f

/// At most this fraction of a QAT output's elements may differ by more than `forwardTolSteps` (a float difference that
/// moves an element across a rounding boundary makes it one whole step off); such an element may be off by one step.
/// Measured: none.
let flipFraction = 0.001

/// After the training-mode forwards, our fake-quantize scales may differ from those PyTorch saved by this many ulps
/// (zero points must be equal): they follow extrema of float activations that differ in the last bits. Measured: 3.
let stateScaleUlps = 4L

/// After the training-mode forwards, our BatchNorm running means and variances may differ from PyTorch's by this much
/// (absolute; the statistics are of order 1): the batch statistics are of convolution outputs that differ in the last
/// bits. Measured: 3.6e-7.
let bnStatTol = 1e-6f

/// Converting PyTorch's own trained state_dict must give PyTorch's scales exactly: the observers' extrema and the
/// BatchNorm folding are reproduced in float32 operation for operation. Measured: 0 ulps.
let loadedScaleUlps = 0L

let private root () = snd (fixtures.Force())
let private json () = (fst (fixtures.Force())).RootElement
let private read (e: JsonElement) : Tensor = Fusion.Dsl.IO.Npy.Read(Path.Combine(root (), e.GetString() |> nonNull))
let private floats (e: JsonElement) = [| for v in e.EnumerateArray() -> float32 (v.GetDouble()) |]
let private longs (e: JsonElement) = [| for v in e.EnumerateArray() -> v.GetInt64() |]

/// The fake-quantize module a fixture case names, rebuilt from our qconfigs or settings.
let private fakeQuantOf (name: string) : FakeQuantize =
    match name.Split '/' with
    | [| "plain"; "activation" |] ->
        FakeQuantize(MovingAverageMinMaxObserver(QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, quantMin = 0, quantMax = 255)), fused = false)
    | [| "plain"; "weight" |] ->
        FakeQuantize(MovingAveragePerChannelMinMaxObserver(QuantizationSettings(QuantizedDType.QInt8, QScheme.PerChannelSymmetric, quantMin = -128, quantMax = 127), 0), fused = false)
    | [| backend; "activation" |] -> QConfig.GetDefaultQat(backend).Activation.Invoke() :?> FakeQuantize
    | [| backend; "weight" |] -> QConfig.GetDefaultQat(backend).Weight.Invoke() :?> FakeQuantize
    | _ -> failwithf "unknown fake-quantize case %s" name

let private runningExtrema (fq: FakeQuantize) =
    match fq.Inner with
    | :? MovingAverageMinMaxObserver as m -> [| m.MinVal |], [| m.MaxVal |]
    | :? MovingAveragePerChannelMinMaxObserver as p -> Seq.toArray p.MinVals, Seq.toArray p.MaxVals
    | o -> failwithf "unexpected observer %s" (o.GetType().Name)

/// Every disagreement of one fake-quantize case with PyTorch, step by step: the output bits, the scale and zero point
/// buffers, the running extrema and calculate_qparams() must all be equal (PyTorch's kernels are reproduced operation
/// for operation, so no tolerance is needed).
let private fakeQuantProblems (c: JsonElement) =
    let name = c.GetProperty("name").GetString() |> nonNull
    let mutable fq = fakeQuantOf name
    let problems = ResizeArray<string>()
    if fq.Fused <> c.GetProperty("fused").GetBoolean() then problems.Add(sprintf "%s: fused %b, PyTorch's %b" name fq.Fused (not fq.Fused))
    c.GetProperty("steps").EnumerateArray() |> Seq.iteri (fun i s ->
        fq <- fq.WithEnabled(s.GetProperty("observer").GetInt32() = 1, s.GetProperty("fake_quant").GetInt32() = 1)
        let r = fq.Forward(read (s.GetProperty "input"))
        fq <- r.State
        let expected = read (s.GetProperty "output")
        let ours = r.Output.Float32.ToArray()
        let bad = Array.map2 (fun (a: float32) (b: float32) -> BitConverter.SingleToInt32Bits a <> BitConverter.SingleToInt32Bits b) ours ((expected: Tensor).Float32.ToArray()) |> Array.filter id |> Array.length
        if bad > 0 then problems.Add(sprintf "%s step %d: %d of %d outputs differ from PyTorch's" name i bad ours.Length)
        let check what (mine: 'a[]) (theirs: 'a[]) = if mine <> theirs then problems.Add(sprintf "%s step %d: %s %A, PyTorch's %A" name i what mine theirs)
        check "scale" (Seq.toArray fq.Current.Scales) (floats (s.GetProperty "scale"))
        check "zero_point" (Seq.toArray fq.Current.ZeroPoints) (longs (s.GetProperty "zero_point"))
        let mins, maxs = runningExtrema fq
        check "min_val" mins (floats (s.GetProperty "min_val"))
        check "max_val" maxs (floats (s.GetProperty "max_val"))
        let q = fq.CalculateQParams()
        check "calculate_qparams scale" (Seq.toArray q.Scales) (floats (s.GetProperty "qparams_scale"))
        check "calculate_qparams zero_point" (Seq.toArray q.ZeroPoints) (longs (s.GetProperty "qparams_zero_point")))
    List.ofSeq problems

/// The model cases: PtqFlowTests' Case over the QAT fixture.
let private ulps (a: float32) (b: float32) =
    let ordered (f: float32) =
        let i = int64 (BitConverter.SingleToInt32Bits f)
        if i < 0L then -(i &&& 0x7FFFFFFFL) else i
    abs (ordered a - ordered b)

let private modelCases () = casesOf fixtures

/// A case's model as PyTorch's fuse_modules_qat fused it: the unfused export (training mode) fused here with its groups.
let private fused (c: Case) =
    let unfused = ModelFile.Read(file c (c.Json.GetProperty("unfused").GetString() |> nonNull))
    let groups = [ for g in c.Json.GetProperty("groups").EnumerateArray() -> [ for p in g.EnumerateArray() -> p.GetString() |> nonNull ] :> seq<string> ]
    Fusion.Dsl.Fuser.FuseModulesQat(unfused, groups)

/// A case's QAT model prepared here: prepare_qat with the backend's default QAT qconfig.
let private prepared (c: Case) = EagerQat.PrepareQat(fused c, QConfigMapping.ForAll(QConfig.GetDefaultQat c.QConfig))

/// The training forward before which the case applied freeze_bn_stats, or -1.
let private freezeAt (c: Case) =
    match c.Json.TryGetProperty "freeze_at" with
    | true, v when v.ValueKind = JsonValueKind.Number -> v.GetInt32()
    | _ -> -1

/// Our training-mode forwards over the case's batches from the initial state (freezing the BatchNorm statistics where
/// the case did): each output with the state after it.
let private trainedSteps (c: Case) (qat: QatModel) =
    let mutable state = qat.InitialState
    [ for i, b in Seq.indexed (c.Json.GetProperty("batches").EnumerateArray()) ->
        if i = freezeAt c then state <- EagerQat.FreezeBnStats(qat, state)
        let r = EagerQat.ForwardQat(qat, state, npy c b, true)
        state <- r.State
        r.Output, r.State ]

/// Our training-mode forwards: each output, and the final state.
let private trained (c: Case) (qat: QatModel) =
    let steps = trainedSteps c qat
    List.map fst steps, snd (List.last steps)

/// Every model case converted by `convert` against PyTorch's converted model (PtqFlowTests.compareConverted), scales
/// within `bound` ulps; prints each case's totals.
let private convertMatches (bound: int64) (convert: Case -> QuantizedModel) =
    needTorch ()
    let failures = ResizeArray<string>()
    for c in modelCases () do
        let problems, u, n, e, w = compareConverted (convert c) c bound bound None true
        for p in problems do failures.Add(sprintf "%s: %s" c.Name p)
        printfn "%s: worst scale %d ulps; %d layer-output elements, %.5f exact, worst %d steps" c.Name u n (float e / float (max n 1)) w
    Expect.isEmpty failures (String.Join("\n", failures))

[<Tests>]
let tests =
    testList "Quantization.Qat" [
        testCase "every default QAT fake-quantize module and plain FakeQuantize equals PyTorch's bit for bit over observer/fake-quant on/off steps" <| fun () ->
            needTorch ()
            let problems = [ for c in json().GetProperty("fake_quant").EnumerateArray() do yield! fakeQuantProblems c ]
            Expect.isEmpty problems (String.Join("\n", problems))

        testCase "an unknown QAT backend is refused, naming the known ones" <| fun () ->
            let e = Support.throwsOf<ArgumentException> (fun () -> QConfig.GetDefaultQat "fbgemmm" |> ignore)
            Expect.stringContains e.Message "'fbgemmm'" "names the backend"
            Expect.stringContains e.Message "qnnpack" "lists the known ones"

        testCase "Forward leaves the fake-quantize module it is called on as it was" <| fun () ->
            let fq = QConfig.GetDefaultQat("x86").Activation.Invoke() :?> FakeQuantize
            let r = fq.Forward(Tensor.FromFloat32(ReadOnlySpan [| -1.0f; 0.5f; 2.0f |], 3))
            Expect.equal (Seq.toArray fq.Current.Scales) [| 1.0f |] "the called module keeps scale 1"
            Expect.equal (fst (runningExtrema fq)) [| infinityf |] "the called module has seen nothing"
            Expect.notEqual (Seq.toArray r.State.Current.Scales) [| 1.0f |] "the returned state has the new scale"

        testCase "ForwardQat after fuse_modules_qat and prepare_qat gives PyTorch's outputs for 3 or 4 training-mode forwards and an eval-mode one, within forwardTolSteps (ConvBnReLU1d/2d/3d, ConvBn1d/2d/3d, ConvReLU2d/3d, Conv2d/3d, the unswapped ConvReLU1d and Conv1d, LinearBn1d, LinearReLU, Linear, FloatFunctional add_relu/add/mul/cat, ReLU6, Hardswish; freeze_bn_stats; x86 and qnnpack)" <| fun () ->
            needTorch ()
            let cases = modelCases ()
            Expect.hasLength cases 13 "five models by two backends, the ReLU6/Hardswish one and two with freeze_bn_stats"
            let problems = ResizeArray<string>()
            for c in cases do
                let qat = prepared c
                let outs, state = trained c qat
                let last = qat.Points |> Seq.filter (fun p -> p.Kind = ObservedKind.Linear) |> Seq.last
                let step = state.FakeQuantizes[QatState.ActivationKey last].Current.Scales[0]
                let eval = EagerQat.ForwardQat(qat, state, npy c (c.Json.GetProperty "input"), false).Output
                let expected = [ for o in c.Json.GetProperty("train_outputs").EnumerateArray() -> npy c o ] @ [ npy c (c.Json.GetProperty "eval_output") ]
                List.zip (outs @ [ eval ]) expected |> List.iteri (fun i (ours, theirs) ->
                    let d = Array.map2 (fun (x: float32) y -> abs (x - y) / step) (ours.Float32.ToArray()) (theirs.Float32.ToArray())
                    let off = d |> Array.filter (fun v -> v > forwardTolSteps)
                    let what = if i < outs.Length then sprintf "training forward %d" i else "eval forward"
                    printfn "%s %s: worst %.2g steps, %d of %d elements beyond %g steps" c.Name what (Array.max d) off.Length d.Length forwardTolSteps
                    if float off.Length > flipFraction * float d.Length || off |> Array.exists (fun v -> v > 1.0f + forwardTolSteps) then
                        problems.Add(sprintf "%s %s: %d of %d elements off by more than %g steps, worst %g" c.Name what off.Length d.Length forwardTolSteps (Array.max d)))
                Expect.equal (Seq.toArray qat.InitialState.FakeQuantizes[QatState.ActivationKey last].Current.Scales) [| 1.0f |] (sprintf "%s: the forwards left the initial state as it was" c.Name)
            Expect.isEmpty problems (String.Join("\n", problems))

        testCase "after each training-mode forward (and at the end) the fake-quantize scales are within stateScaleUlps of the state_dict PyTorch saved, zero points equal, BatchNorm running statistics within bnStatTol" <| fun () ->
            needTorch ()
            let problems = ResizeArray<string>()
            for c in modelCases () do
                let qat = prepared c
                let steps = trainedSteps c qat
                let saved = [ for f in c.Json.GetProperty("step_state_dicts").EnumerateArray() -> f ] @ [ c.Json.GetProperty("state_dict") ]
                let ours = List.map snd steps @ [ snd (List.last steps) ]
                Expect.equal saved.Length ours.Length (sprintf "%s: one saved state_dict per step" c.Name)
                for i, (f, ours: QatState) in List.indexed (List.zip saved ours) do
                    let at = if i < steps.Length then sprintf "%s after step %d" c.Name i else sprintf "%s at the end" c.Name
                    let theirs = (QatStateDict.Load(qat, file c (f.GetString() |> nonNull))).State
                    Expect.equal (Set.ofSeq ours.FakeQuantizes.Keys) (Set.ofSeq theirs.FakeQuantizes.Keys) (sprintf "%s: the same fake-quantize modules as PyTorch's" at)
                    for kv in theirs.FakeQuantizes do
                        let mine = ours.FakeQuantizes[kv.Key]
                        let u = Array.map2 ulps (Seq.toArray mine.Current.Scales) (Seq.toArray kv.Value.Current.Scales) |> Array.max
                        if u > stateScaleUlps then problems.Add(sprintf "%s %s: scale %d ulps from PyTorch's" at kv.Key u)
                        if Seq.toArray mine.Current.ZeroPoints <> Seq.toArray kv.Value.Current.ZeroPoints then problems.Add(sprintf "%s %s: zero points differ" at kv.Key)
                    for kv in theirs.BatchNorms do
                        let mine = ours.BatchNorms[kv.Key]
                        if mine.NumBatchesTracked <> kv.Value.NumBatchesTracked then problems.Add(sprintf "%s %s: %d batches tracked, PyTorch %d" at kv.Key mine.NumBatchesTracked kv.Value.NumBatchesTracked)
                        for what, (a: Tensor), (b: Tensor) in [ "running_mean", mine.RunningMean, kv.Value.RunningMean; "running_var", mine.RunningVar, kv.Value.RunningVar ] do
                            let d = Array.map2 (fun (x: float32) y -> abs (x - y)) (a.Float32.ToArray()) (b.Float32.ToArray()) |> Array.max
                            if d > bnStatTol then problems.Add(sprintf "%s %s: %s differs by %g" at kv.Key what d)
            Expect.isEmpty problems (String.Join("\n", problems))

        testCase "ConvertQat of the state_dict PyTorch saved after QAT steps equals PyTorch's convert(qat_model.eval()): scales within loadedScaleUlps, int8 layer outputs at least exactFraction exact and within maxSteps" <| fun () ->
            convertMatches loadedScaleUlps (fun c ->
                let ck = QatStateDict.Load(prepared c, file c (c.Json.GetProperty("state_dict").GetString() |> nonNull))
                EagerQat.ConvertQat(ck.Model, ck.State))

        testCase "ConvertQat of our own state after our 3 training-mode forwards equals PyTorch's converted model: scales within stateScaleUlps, int8 layer outputs at least exactFraction exact and within maxSteps" <| fun () ->
            convertMatches stateScaleUlps (fun c ->
                let qat = prepared c
                EagerQat.ConvertQat(qat, snd (trained c qat)))

        testCase "the int8 model ConvertQat makes from PyTorch's QAT state_dict takes PyTorch's converted state_dict strictly (same keys, shapes, dtypes) and then computes the same integers" <| fun () ->
            needTorch ()
            for c in modelCases () do
                let ck = QatStateDict.Load(prepared c, file c (c.Json.GetProperty("state_dict").GetString() |> nonNull))
                let ours = EagerQat.ConvertQat(ck.Model, ck.State)
                let theirs = QuantizedStateDict.Load(ours, file c (c.Json.GetProperty("converted_state_dict").GetString() |> nonNull))
                let x = npy c (c.Json.GetProperty "input")
                Expect.equal (theirs.Forward(x).Float32.ToArray()) (ours.Forward(x).Float32.ToArray()) (sprintf "%s: PyTorch's converted parameters give our outputs" c.Name)

        testCase "ForwardQat and ConvertQat refuse a state without one of the model's fake-quantize modules, naming it" <| fun () ->
            needTorch ()
            let cases = modelCases ()
            let convnet = cases |> List.find (fun c -> c.Name.StartsWith "convnet")
            let residual = prepared (cases |> List.find (fun c -> c.Name.StartsWith "residual"))
            let other = (prepared convnet).InitialState
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.ForwardQat(residual, other, npy convnet (convnet.Json.GetProperty "input"), true) |> ignore)
            Expect.stringContains e.Message "fake-quantize module '" "names the missing module"
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.ConvertQat(residual, other) |> ignore)
            Expect.stringContains e.Message "fake-quantize module '" "names the missing module"

        testCase "QatStateDict.Save of our state after our training-mode forwards loads strictly into PyTorch's prepare_qat model, whose eval forward then gives ours within forwardTolSteps, and loads back here unchanged" <| fun () ->
            needTorch ()
            let checker = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "qat_state_dict_check.py")
            let problems = ResizeArray<string>()
            for c in modelCases () do
                let qat = prepared c
                let _, state = trained c qat
                let saved = Path.Combine(root (), c.Name.Replace('/', '_') + "_ours.pt")
                let out = Path.Combine(root (), c.Name.Replace('/', '_') + "_ours_eval.npy")
                QatStateDict.Save(qat, state, saved)
                let args = [ checker; c.Json.GetProperty("builder").GetString() |> nonNull; string (c.Json.GetProperty("seed").GetInt32()); c.QConfig; saved; file c (c.Json.GetProperty("input").GetString() |> nonNull); out ]
                let code, stdout, stderr = Support.exec Support.python3 args (root ())
                if code <> 0 then problems.Add(sprintf "%s: PyTorch refused our file (exit %d): %s%s" c.Name code stdout stderr)
                else
                    let ours = EagerQat.ForwardQat(qat, state, npy c (c.Json.GetProperty "input"), false)
                    let last = qat.Points |> Seq.filter (fun p -> p.Kind = ObservedKind.Linear) |> Seq.last
                    let step = ours.State.FakeQuantizes[QatState.ActivationKey last].Current.Scales[0]
                    let d = Array.map2 (fun (x: float32) y -> abs (x - y) / step) (ours.Output.Float32.ToArray()) (Npy.Read(out).Float32.ToArray()) |> Array.max
                    if d > forwardTolSteps then problems.Add(sprintf "%s: PyTorch's eval forward with our state differs from ours by %g steps" c.Name d)
                let back = QatStateDict.Load(qat, saved).State
                for kv in state.FakeQuantizes do
                    let b = back.FakeQuantizes[kv.Key]
                    if Seq.toArray b.Current.Scales <> Seq.toArray kv.Value.Current.Scales || b.CalculateQParams().Scales <> kv.Value.CalculateQParams().Scales then
                        problems.Add(sprintf "%s %s: not the same after saving and loading" c.Name kv.Key)
                for kv in state.BatchNorms do
                    if back.BatchNorms[kv.Key].RunningVar <> kv.Value.RunningVar || back.BatchNorms[kv.Key].NumBatchesTracked <> kv.Value.NumBatchesTracked then
                        problems.Add(sprintf "%s %s: BatchNorm statistics not the same after saving and loading" c.Name kv.Key)
            Expect.isEmpty problems (String.Join("\n", problems))

        testCase "a QAT state_dict missing a fake-quantize key is refused, naming the file and the key" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let source = file c (c.Json.GetProperty("state_dict").GetString() |> nonNull)
            let key = "conv1.weight_fake_quant.activation_post_process.min_val"
            let bad = Path.Combine(root (), "missing_key.pt")
            TorchCheckpoint.Write(bad, TorchCheckpoint.Read source |> Seq.filter (fun kv -> kv.Key <> key))
            let e = Support.throwsOf<ModelFormatException> (fun () -> QatStateDict.Load(prepared c, bad) |> ignore)
            Expect.stringContains e.Message key "names the key"
            Expect.stringContains e.Message "missing_key.pt" "names the file"

        testCase "a QAT state_dict with a wrongly shaped scale or weight is refused, naming the key and both shapes" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let source = file c (c.Json.GetProperty("state_dict").GetString() |> nonNull)
            for key, replacement in [ "conv1.weight_fake_quant.scale", Tensor.Zeros(3); "fc1.weight", Tensor.Zeros(2, 2) ] do
                let bad = Path.Combine(root (), "wrong_shape.pt")
                TorchCheckpoint.Write(bad, TorchCheckpoint.Read source |> Seq.map (fun kv -> if kv.Key = key then KeyValuePair(key, replacement) else kv))
                let e = Support.throwsOf<ModelFormatException> (fun () -> QatStateDict.Load(prepared c, bad) |> ignore)
                Expect.stringContains e.Message key "names the key"
                Expect.stringContains e.Message (Tensor.ShapeString(replacement.Shape)) "names the file's shape"

        testCase "a QAT state_dict with a key the model does not hold is refused, naming the key" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let source = file c (c.Json.GetProperty("state_dict").GetString() |> nonNull)
            let bad = Path.Combine(root (), "unexpected_key.pt")
            TorchCheckpoint.Write(bad, Seq.append (TorchCheckpoint.Read source) [ KeyValuePair("conv9.weight", Tensor.Zeros(1)) ])
            let e = Support.throwsOf<ModelFormatException> (fun () -> QatStateDict.Load(prepared c, bad) |> ignore)
            Expect.stringContains e.Message "conv9.weight" "names the key"
            Expect.stringContains e.Message "unexpected" "says what is wrong"

        testCase "the F# pipeline (Quantization.prepareQat |> forwardQat |> saveQatStateDict, loadQatStateDict |> convertQat) gives the C# flow's outputs" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let x = npy c (c.Json.GetProperty "input")
            let qat = fused c |> Fusion.Dsl.FSharp.Quantization.prepareQat (QConfigMapping.ForAll(Fusion.Dsl.FSharp.Quantization.getDefaultQatQConfig c.QConfig))
            let y, state = qat |> Fusion.Dsl.FSharp.Quantization.forwardQat true x qat.InitialState
            let viaCs = EagerQat.ForwardQat(prepared c, (prepared c).InitialState, x, true)
            Expect.equal (y.Float32.ToArray()) (viaCs.Output.Float32.ToArray()) "the same QAT forward"
            Expect.equal (Seq.toArray state.FakeQuantizes.Keys |> Array.sort) (Seq.toArray viaCs.State.FakeQuantizes.Keys |> Array.sort) "the same state"
            let model, loaded = qat |> Fusion.Dsl.FSharp.Quantization.loadQatStateDict (file c (c.Json.GetProperty("state_dict").GetString() |> nonNull))
            let q = model |> Fusion.Dsl.FSharp.Quantization.convertQat loaded
            let ck = QatStateDict.Load(prepared c, file c (c.Json.GetProperty("state_dict").GetString() |> nonNull))
            Expect.equal (q.Forward(x).Float32.ToArray()) (EagerQat.ConvertQat(ck.Model, ck.State).Forward(x).Float32.ToArray()) "the same int8 forward"
            let saved = Path.Combine(root (), "fsharp_qat.pt")
            qat |> Fusion.Dsl.FSharp.Quantization.saveQatStateDict saved state
            Expect.equal (Seq.toArray (QatStateDict.Load(qat, saved).State.FakeQuantizes[QatState.ActivationKey qat.Points[0]].Current.Scales))
                (Seq.toArray state.FakeQuantizes[QatState.ActivationKey qat.Points[0]].Current.Scales) "saved and loaded back"

        testCase "PrepareQat refuses a model in eval mode (PyTorch's prepare_qat requires training mode), naming the module" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat((fused c).Eval(), QConfigMapping.ForAll(QConfig.GetDefaultQat "x86")) |> ignore)
            Expect.stringContains e.Message "<root>" "names the module"
            Expect.stringContains e.Message "training mode" "says what is needed"

        testCase "PrepareQat refuses an unfused Conv, BatchNorm pair's BatchNorm, naming its path and how to keep it float" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let unfused = ModelFile.Read(file c (c.Json.GetProperty("unfused").GetString() |> nonNull))
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(unfused, QConfigMapping.ForAll(QConfig.GetDefaultQat "x86")) |> ignore)
            Expect.stringContains e.Message "'bn1' (BatchNorm2d)" "names the module"
            Expect.stringContains e.Message "WithPath(\"bn1\", null)" "says how to keep it float"

        testCase "PrepareQat refuses a qconfig that fake-quantizes activations per channel, naming the module" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let qat = QConfig.GetDefaultQat "x86"
            let perChannel = QConfig("per-channel activations", qat.Weight, qat.Weight)
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(fused c, QConfigMapping.ForAll perChannel) |> ignore)
            Expect.stringContains e.Message "'quant'" "names the module"
            Expect.stringContains e.Message "per channel" "says what is wrong"

        testCase "PrepareQat refuses a post-training qconfig (observers, not fake-quantize modules), naming the module" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.head
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(fused c, QConfigMapping.ForAll(QConfig.GetDefault "x86")) |> ignore)
            Expect.stringContains e.Message "'quant'" "names the module"
            Expect.stringContains e.Message "GetDefaultQat" "says what to use"


        testCase "FreezeBnStats freezes the Conv+BatchNorm modules' statistics and leaves LinearBn1d's updating, as PyTorch's model.apply(freeze_bn_stats); a frozen forward leaves them as they were; UpdateBnStats undoes it" <| fun () ->
            needTorch ()
            let c = modelCases () |> List.find (fun c -> c.Name = "conv1d_frozen/x86")
            let qat = prepared c
            let frozen = EagerQat.FreezeBnStats(qat, qat.InitialState)
            Expect.equal [ for kv in frozen.BatchNorms |> Seq.sortBy (fun kv -> kv.Key) -> kv.Key, kv.Value.Frozen ] [ "conv1", true; "conv2", true; "fc1", false ] "ConvBnReLU1d and ConvBn1d frozen, LinearBn1d not"
            let after = EagerQat.ForwardQat(qat, frozen, npy c (c.Json.GetProperty "input"), true).State
            for p in [ "conv1"; "conv2" ] do
                Expect.equal after.BatchNorms[p].NumBatchesTracked frozen.BatchNorms[p].NumBatchesTracked (sprintf "%s: no batch tracked" p)
                Expect.equal (after.BatchNorms[p].RunningMean.Float32.ToArray()) (frozen.BatchNorms[p].RunningMean.Float32.ToArray()) (sprintf "%s: running mean kept" p)
            Expect.equal after.BatchNorms["fc1"].NumBatchesTracked (frozen.BatchNorms["fc1"].NumBatchesTracked + 1L) "LinearBn1d tracked the batch"
            Expect.isFalse (EagerQat.UpdateBnStats(qat, frozen).BatchNorms |> Seq.exists (fun kv -> kv.Value.Frozen)) "updating again"
            let viaFs = qat |> Fusion.Dsl.FSharp.Quantization.freezeBnStats qat.InitialState
            Expect.equal [ for kv in viaFs.BatchNorms |> Seq.sortBy (fun kv -> kv.Key) -> kv.Value.Frozen ] [ true; true; false ] "the F# freezeBnStats is the same"
            Expect.isFalse (qat |> Fusion.Dsl.FSharp.Quantization.updateBnStats viaFs).BatchNorms["conv1"].Frozen "the F# updateBnStats undoes it"

        testCase "PrepareQat refuses a LinearBn1d whose BatchNorm tracks no running statistics, naming its path" <| fun () ->
            let model = EagerQuantization.QuantWrapper(Fusion.Dsl.Layers.FusedModule.Create("LinearBn1d", TestModels.linear 4 3 1 true, TestModels.bnNoStats 1 3 true)).Train()
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(model, QConfigMapping.ForAll(QConfig.GetDefaultQat "x86")) |> ignore)
            Expect.stringContains e.Message "'module'" "names the module"
            Expect.stringContains e.Message "running statistics" "says what is missing"

        testCase "ForwardQat refuses a 3-d input to a LinearBn1d (its BatchNorm1d reads dimension 1 as features), naming its path; a 2-d one runs" <| fun () ->
            let model = EagerQuantization.QuantWrapper(Fusion.Dsl.Layers.FusedModule.Create("LinearBn1d", TestModels.linear 4 3 1 true, TestModels.bn 1 3 2 true)).Train()
            let qat = EagerQat.PrepareQat(model, QConfigMapping.ForAll(QConfig.GetDefaultQat "x86"))
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.ForwardQat(qat, qat.InitialState, Tensor.Zeros(2, 3, 4), true) |> ignore)
            Expect.stringContains e.Message "LinearBn1d 'module'" "names the module"
            Expect.stringContains e.Message "[2, 3, 4]" "names the shape"
            let ok = EagerQat.ForwardQat(qat, qat.InitialState, Tensor.Generate((fun i -> float32 i * 0.1f), [| 5; 4 |]), true)
            Expect.equal (ok.Output.Shape.ToArray()) [| 5; 3 |] "a [N, in_features] input runs"

        testCase "PrepareQat refuses a Linear+BatchNorm1d+ReLU group (PyTorch 1.13's fuse_modules_qat has no fuser method for it), naming its path and PyTorch's reason" <| fun () ->
            let fused = Fusion.Dsl.Layers.FusedModule.Create("LinearBnReLU1d", TestModels.linear 4 3 1 true, TestModels.bn 1 3 2 true, TestModels.relu true)
            let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(EagerQuantization.QuantWrapper(fused).Train(), QConfigMapping.ForAll(QConfig.GetDefaultQat "x86")) |> ignore)
            Expect.stringContains e.Message "'module' (LinearBnReLU1d)" "names the module"
            Expect.stringContains e.Message "no fuser method" "gives PyTorch's reason"

        testCase "PrepareQat refuses ConvTranspose1d/2d/3d and PReLU (PyTorch 1.13's DEFAULT_QAT_MODULE_MAPPINGS has no QAT module for them), naming the path, PyTorch's reason and how to keep it float" <| fun () ->
            let prelu = Fusion.Dsl.Layers.OpaqueModule.Create("PReLU", "torch.nn", [ KeyValuePair("num_parameters", box 1L) ], state = Fusion.Dsl.Algebra.TensorDict.Create([| struct ("weight", Tensor.Full(0.25f, 1)) |]))
            let refused : (string * Fusion.Dsl.Algebra.Module) list =
                [ for rank in 1..3 -> sprintf "ConvTranspose%dd" rank, Fusion.Dsl.Layers.Conv.Create(rank, 3, 4, [| 2 |], transposed = true) :> Fusion.Dsl.Algebra.Module ]
                @ [ "PReLU", prelu ]
            for typeName, m in refused do
                let e = Support.throwsOf<ArgumentException> (fun () -> EagerQat.PrepareQat(EagerQuantization.QuantWrapper(m).Train(), QConfigMapping.ForAll(QConfig.GetDefaultQat "qnnpack")) |> ignore)
                Expect.stringContains e.Message (sprintf "'module' (%s)" typeName) "names the module"
                Expect.stringContains e.Message "PyTorch 1.13 has no QAT form of it" "says PyTorch has none"
                Expect.stringContains e.Message (sprintf "DEFAULT_QAT_MODULE_MAPPINGS has no %s" typeName) "and where"
                Expect.stringContains e.Message "WithPath(\"module\", null)" "says how to keep it float"
    ]
