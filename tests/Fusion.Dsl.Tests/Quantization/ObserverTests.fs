/// The observers of Fusion.Dsl.Quantization against PyTorch 1.13: observer_fixtures.py (beside this file) runs
/// PyTorch's observers over seeded calibration batches at test time and writes what they hold and what
/// calculate_qparams() returns; every case is replayed here. Scales may differ by `scaleUlps` float32 ulps, zero
/// points, running extrema and histograms must be equal. Then the refusals: bad batches and bad options.
module Fusion.Dsl.Tests.Quantization.ObserverTests

open System
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tensors
open Fusion.Dsl.Quantization
open Fusion.Dsl.Tests

/// A scale may differ from PyTorch's by at most this many float32 ulps.
let scaleUlps = 1L

/// Distance in float32 ulps (steps of representable values) between two finite floats.
let private ulps (a: float32) (b: float32) =
    let ordered (f: float32) =
        let i = int64 (BitConverter.SingleToInt32Bits f)
        if i < 0L then -(i &&& 0x7FFFFFFFL) else i
    abs (ordered a - ordered b)

let private generator = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Quantization", "observer_fixtures.py")

let private needTorch () = Support.requireTool "PyTorch (/usr/bin/python3 with python3-torch)" (Support.pythonHas [ "torch"; "numpy" ])

/// One replayed case: PyTorch's observer, its batches, and what it held and answered.
type private Case =
    { Name: string
      Observer: string
      Args: JsonElement
      Batches: Tensor list
      Scale: float32[]
      ZeroPoint: int64[]
      MinVal: float32[] option
      MaxVal: float32[] option
      Histogram: float32[] option }

let private floats (e: JsonElement) = [| for v in e.EnumerateArray() -> float32 (v.GetDouble()) |]

let private optFloats (c: JsonElement) (name: string) =
    match c.TryGetProperty name with
    | true, v -> Some(floats v)
    | _ -> None

/// The fixture cases, generated once per test run by PyTorch into a temp folder.
let private cases =
    lazy (
        use doc = Support.generatedJson generator
        [ for c in doc.RootElement.GetProperty("cases").EnumerateArray() ->
            { Name = c.GetProperty("name").GetString() |> nonNull
              Observer = c.GetProperty("observer").GetString() |> nonNull
              Args = c.GetProperty("args").Clone()
              Batches =
                [ for b in c.GetProperty("batches").EnumerateArray() ->
                    let shape = [| for d in b.GetProperty("shape").EnumerateArray() -> d.GetInt32() |]
                    Tensor.FromFloat32(ReadOnlySpan(floats (b.GetProperty "data")), shape) ]
              Scale = floats (c.GetProperty "scale")
              ZeroPoint = [| for v in c.GetProperty("zero_point").EnumerateArray() -> v.GetInt64() |]
              MinVal = optFloats c "min_val"
              MaxVal = optFloats c "max_val"
              Histogram = optFloats c "histogram" } ])

let private str (a: JsonElement) (name: string) = a.GetProperty(name).GetString() |> nonNull

let private dtypeOf =
    function
    | "quint8" -> QuantizedDType.QUInt8
    | "qint8" -> QuantizedDType.QInt8
    | d -> failwithf "unknown dtype %s" d

let private schemeOf =
    function
    | "per_tensor_affine" -> QScheme.PerTensorAffine
    | "per_tensor_symmetric" -> QScheme.PerTensorSymmetric
    | "per_channel_affine" -> QScheme.PerChannelAffine
    | "per_channel_symmetric" -> QScheme.PerChannelSymmetric
    | s -> failwithf "unknown qscheme %s" s

let private optInt (a: JsonElement) (name: string) =
    match a.GetProperty name with
    | v when v.ValueKind = JsonValueKind.Null -> Nullable()
    | v -> Nullable(v.GetInt32())

let private settingsOf (a: JsonElement) =
    QuantizationSettings(dtypeOf (str a "dtype"), schemeOf (str a "qscheme"), a.GetProperty("reduce_range").GetBoolean(), optInt a "quant_min", optInt a "quant_max")

let private averaging (a: JsonElement) = float32 (a.GetProperty("averaging_constant").GetDouble())

/// The observer a case names, before any batch.
let private observerOf (c: Case) : Observer =
    let a = c.Args
    match c.Observer with
    | "MinMaxObserver" -> MinMaxObserver(settingsOf a)
    | "MovingAverageMinMaxObserver" -> MovingAverageMinMaxObserver(settingsOf a, averaging a)
    | "PerChannelMinMaxObserver" -> PerChannelMinMaxObserver(settingsOf a, a.GetProperty("ch_axis").GetInt32())
    | "MovingAveragePerChannelMinMaxObserver" ->
        MovingAveragePerChannelMinMaxObserver(settingsOf a, a.GetProperty("ch_axis").GetInt32(), averaging a)
    | "HistogramObserver" -> HistogramObserver(settingsOf a)
    | "FixedQParamsObserver" ->
        FixedQParamsObserver(a.GetProperty("scale").GetDouble(), a.GetProperty("zero_point").GetInt64(), dtypeOf (str a "dtype"),
                             schemeOf (str a "qscheme"), a.GetProperty("quant_min").GetInt32(), a.GetProperty("quant_max").GetInt32())
    | o -> failwithf "unknown observer %s" o

/// The running state an observer holds: min and max (per channel or one each) and the histogram.
let private stateOf (o: Observer) =
    match o with
    | :? MinMaxObserver as m -> Some [| m.MinVal |], Some [| m.MaxVal |], None
    | :? MovingAverageMinMaxObserver as m -> Some [| m.MinVal |], Some [| m.MaxVal |], None
    | :? PerChannelMinMaxObserver as m -> Some(m.MinVals |> Seq.toArray), Some(m.MaxVals |> Seq.toArray), None
    | :? MovingAveragePerChannelMinMaxObserver as m -> Some(m.MinVals |> Seq.toArray), Some(m.MaxVals |> Seq.toArray), None
    | :? HistogramObserver as h -> Some [| h.MinVal |], Some [| h.MaxVal |], Some(h.Histogram |> Seq.toArray)
    | _ -> None, None, None

let private describe (c: Case) = sprintf "%s %s" c.Name (c.Args.GetRawText())

/// What differs between our replay of a case and PyTorch's record of it (empty when they agree).
let private mismatches (c: Case) =
    let o = (observerOf c).ObserveAll c.Batches
    let q = o.CalculateQParams()
    let minV, maxV, hist = stateOf o
    [ let sameBits (name: string) (ours: float32[] option) (theirs: float32[] option) =
          match ours, theirs with
          | Some ours, Some theirs when ours <> theirs -> [ sprintf "%s: ours %A, PyTorch's %A" name ours theirs ]
          | _ -> []
      yield! sameBits "min_val" minV c.MinVal
      yield! sameBits "max_val" maxV c.MaxVal
      match hist, c.Histogram with
      | Some ours, Some theirs when ours <> theirs ->
          let diff = [ for i in 0 .. ours.Length - 1 do if ours.[i] <> theirs.[i] then yield i ]
          yield sprintf "histogram: %d bins differ, first %d: ours %g, PyTorch's %g" diff.Length diff.Head ours.[diff.Head] theirs.[diff.Head]
      | _ -> ()
      let scales = q.Scales |> Seq.toArray
      if scales.Length <> c.Scale.Length then yield sprintf "scales: ours %A, PyTorch's %A" scales c.Scale
      elif Array.exists2 (fun a b -> ulps a b > scaleUlps) scales c.Scale then
          yield sprintf "scales: ours %A, PyTorch's %A (ulps %A)" scales c.Scale (Array.map2 ulps scales c.Scale)
      let zps = q.ZeroPoints |> Seq.toArray
      if zps <> c.ZeroPoint then yield sprintf "zero points: ours %A, PyTorch's %A" zps c.ZeroPoint ]

/// A test that every fixture case of one observer class agrees with PyTorch; fails naming each case that does not.
let private agreesWithPyTorch (observer: string) (minimumCases: int) =
    test (sprintf "%s's state and calculate_qparams() equal PyTorch's on every fixture case" observer) {
        needTorch ()
        let mine = cases.Force() |> List.filter (fun c -> c.Observer = observer)
        Expect.isGreaterThanOrEqual mine.Length minimumCases (sprintf "at least %d %s cases were generated" minimumCases observer)
        let failures = [ for c in mine do match mismatches c with [] -> () | ms -> yield describe c + "\n    " + String.Join("\n    ", ms) ]
        if not failures.IsEmpty then
            failtestf "%d of %d %s cases differ from PyTorch:\n%s" failures.Length mine.Length observer (String.Join("\n", List.truncate 12 failures))
    }

let private settings dtype scheme = QuantizationSettings(dtype, scheme)
let private affine = settings QuantizedDType.QUInt8 QScheme.PerTensorAffine
let private perChannel = settings QuantizedDType.QInt8 QScheme.PerChannelSymmetric
let private batch (values: float32[]) = Tensor.FromFloat32(ReadOnlySpan values, values.Length)
let private good = batch [| -1.0f; 0.5f; 2.0f |]

/// Every observer kind, each having seen one good batch, for the refusal tests.
let private observed () : Observer list =
    [ MinMaxObserver(affine).Observe good
      MovingAverageMinMaxObserver(affine).Observe good
      PerChannelMinMaxObserver(perChannel).Observe good
      MovingAveragePerChannelMinMaxObserver(perChannel).Observe good
      HistogramObserver(affine).Observe good
      FixedQParamsObserver(0.1, 3L).Observe good ]

let private qparamsText (o: Observer) =
    let q = o.CalculateQParams()
    sprintf "%A %A" (q.Scales |> Seq.toArray) (q.ZeroPoints |> Seq.toArray)

/// Every observer refuses `bad` with an ArgumentException whose message contains `says`, and is unchanged after.
let private refusesBatch (bad: Tensor) (says: string) =
    for o in observed () do
        let before = qparamsText o
        let e = Support.throwsOf<ArgumentException> (fun () -> o.Observe bad |> ignore)
        Expect.stringContains e.Message says (sprintf "%s names the problem" (o.GetType().Name))
        Expect.equal (qparamsText o) before (sprintf "%s is unchanged" (o.GetType().Name))

[<Tests>]
let tests =
    testList "Quantization" [
        testList "Observers" [
            agreesWithPyTorch "MinMaxObserver" 200
            agreesWithPyTorch "MovingAverageMinMaxObserver" 400
            agreesWithPyTorch "PerChannelMinMaxObserver" 100
            agreesWithPyTorch "MovingAveragePerChannelMinMaxObserver" 100
            agreesWithPyTorch "HistogramObserver" 200
            agreesWithPyTorch "FixedQParamsObserver" 3

            test "observing returns a new observer and leaves the old one as it was" {
                let first = MinMaxObserver(affine).Observe good
                let second = first.Observe(batch [| -5.0f; 9.0f |])
                Expect.equal (first.MinVal, first.MaxVal) (-1.0f, 2.0f) "the first state keeps its extrema"
                Expect.equal (second.MinVal, second.MaxVal) (-5.0f, 9.0f) "the second state has the wider ones"
                let h = HistogramObserver(affine).Observe good
                let hist = h.Histogram |> Seq.toArray
                h.Observe(batch [| -40.0f; 70.0f |]) |> ignore
                Expect.equal (h.Histogram |> Seq.toArray) hist "the histogram of the earlier state is unchanged"
            }
            test "an observer that has seen nothing answers PyTorch's default scale 1.0 and zero point 0" {
                for o in [ MinMaxObserver(affine) :> Observer; PerChannelMinMaxObserver(perChannel); HistogramObserver(affine) ] do
                    Expect.equal (qparamsText o) (qparamsText (FixedQParamsObserver(1.0, 0L))) (o.GetType().Name)
            }
            test "a batch holding NaN is refused by every observer, which stays unchanged" {
                refusesBatch (batch [| 1.0f; nanf; 2.0f |]) "NaN"
            }
            test "a batch holding an infinity is refused by every observer, which stays unchanged" {
                refusesBatch (batch [| 1.0f; -infinityf |]) "finite"
                refusesBatch (batch [| infinityf |]) "finite"
            }
            test "an empty batch is refused by every observer" {
                refusesBatch (Tensor.FromFloat32(ReadOnlySpan([||]), 0, 3)) "empty batch"
            }
            test "an int64 batch is refused by every observer" {
                refusesBatch (Tensor.FromInt64(ReadOnlySpan([| 1L; 2L |]), 2)) "float32"
            }
            test "quant_min greater than quant_max is refused, naming both" {
                let e = Support.throwsOf<ArgumentException> (fun () -> QuantizationSettings(QuantizedDType.QInt8, QScheme.PerTensorAffine, false, Nullable 5, Nullable -5) |> ignore)
                Expect.stringContains e.Message "5" "names the range"
                let e = Support.throwsOf<ArgumentException> (fun () -> QuantizationSettings(QuantizedDType.QInt8, QScheme.PerTensorAffine, false, Nullable 0, Nullable 0) |> ignore)
                Expect.stringContains e.Message "strictly less" "an empty range too"
                let e = Support.throwsOf<ArgumentException> (fun () -> FixedQParamsObserver(0.1, 0L, quantMin = 10, quantMax = 1) |> ignore)
                Expect.stringContains e.Message "exceeds quant_max" "the fixed observer's range too"
            }
            test "a custom range must include zero" {
                let e = Support.throwsOf<ArgumentException> (fun () -> QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, false, Nullable 1, Nullable 200) |> ignore)
                Expect.stringContains e.Message "must include 0" "names the rule"
            }
            test "a qint8 range with the unsigned quint8 dtype is refused, and a quint8 range with qint8" {
                let e = Support.throwsOf<ArgumentException> (fun () -> QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, false, Nullable -128, Nullable 127) |> ignore)
                Expect.stringContains e.Message "does not fit torch.quint8" "names the dtype"
                let e = Support.throwsOf<ArgumentException> (fun () -> QuantizationSettings(QuantizedDType.QInt8, QScheme.PerTensorAffine, false, Nullable 0, Nullable 255) |> ignore)
                Expect.stringContains e.Message "does not fit torch.qint8" "names the dtype"
            }
            test "a ch_axis outside the batch's rank is refused by the per-channel observers, which stay unchanged" {
                for o in [ PerChannelMinMaxObserver(perChannel, 2).Observe(Tensor.Zeros(2, 3, 4)) :> Observer
                           MovingAveragePerChannelMinMaxObserver(perChannel, -3).Observe(Tensor.Zeros(2, 3, 4)) ] do
                    let before = qparamsText o
                    let e = Support.throwsOf<ArgumentOutOfRangeException> (fun () -> o.Observe(Tensor.Zeros(2, 3)) |> ignore)
                    Expect.stringContains e.Message "out of range for a batch of rank 2" (o.GetType().Name)
                    Expect.equal (qparamsText o) before "unchanged"
                let e = Support.throwsOf<ArgumentOutOfRangeException> (fun () -> PerChannelMinMaxObserver(perChannel, -3).Observe(Tensor.Zeros(2, 3)) |> ignore)
                Expect.stringContains e.Message "ch_axis -3" "a negative axis too"
            }
            test "a batch with another channel count than the running extrema is refused" {
                let o = PerChannelMinMaxObserver(perChannel, 1).Observe(Tensor.Zeros(2, 3))
                let e = Support.throwsOf<ArgumentException> (fun () -> o.Observe(Tensor.Zeros(2, 4)) |> ignore)
                Expect.stringContains e.Message "3 channels" "names the counts"
            }
            test "the schemes each observer refuses, as PyTorch does: per-channel for per-tensor observers and back, symmetric quint8 with reduce_range" {
                let symReduced = QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorSymmetric, true)
                Support.throwsOf<ArgumentException> (fun () -> MinMaxObserver symReduced |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> MovingAverageMinMaxObserver symReduced |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> MinMaxObserver perChannel |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> HistogramObserver perChannel |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> PerChannelMinMaxObserver affine |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> PerChannelMinMaxObserver(QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerChannelSymmetric, true)) |> ignore) |> ignore
                HistogramObserver symReduced |> ignore
            }
        ]
    ]
