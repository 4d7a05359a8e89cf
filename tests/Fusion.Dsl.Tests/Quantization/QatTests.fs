/// Quantization-aware training (FakeQuantize, QConfig.GetDefaultQat, EagerQat) against PyTorch 1.13: qat_fixtures.py
/// (beside this file) runs PyTorch's fake-quantize modules and small QAT models at test time; every case is replayed here.
module Fusion.Dsl.Tests.Quantization.QatTests

open System
open System.Text.Json
open System.IO
open Expecto
open Fusion.Dsl.Tensors
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Quantization.PtqFlowTests

let private generator = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "qat_fixtures.py")

let private fixtures = fixturesFrom generator "fusion-qat-"

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
    ]
