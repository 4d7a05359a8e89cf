/// Test-side reading of the PyTorch fixtures (fusion-fixture/1) for the fusion rules: just enough of the JSON module tree and
/// the safetensors file to rebuild the models these tests need (Sequential, user containers, Conv/ConvTranspose, BatchNorm,
/// Linear, activations, Identity and the stateless layers). The project's own fixture reader lives elsewhere.
module Fusion.Dsl.Tests.Rules.FixtureModels

open System
open System.Buffers.Binary
open System.IO
open System.Text
open System.Text.Json
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests

let private str (j: JsonElement) = match j.GetString() with | null -> failtestf "expected a string, got %s" (j.GetRawText()) | s -> s

/// The tensors of a safetensors file by name.
let readSafetensors (path: string) : Map<string, Tensor> =
    let bytes = File.ReadAllBytes path
    let headerLen = int (BinaryPrimitives.ReadUInt64LittleEndian(ReadOnlySpan(bytes, 0, 8)))
    let header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, headerLen)).RootElement
    let data = 8 + headerLen
    [ for p in header.EnumerateObject() do
        if p.Name <> "__metadata__" then
            let shape = [| for d in p.Value.GetProperty("shape").EnumerateArray() -> d.GetInt32() |]
            let offs = [| for o in p.Value.GetProperty("data_offsets").EnumerateArray() -> o.GetInt32() |]
            let span = ReadOnlySpan(bytes, data + offs.[0], offs.[1] - offs.[0])
            let t =
                match str (p.Value.GetProperty "dtype") with
                | "F32" -> Tensor.FromFloat32(Runtime.InteropServices.MemoryMarshal.Cast<byte, float32>(span), shape)
                | "I64" -> Tensor.FromInt64(Runtime.InteropServices.MemoryMarshal.Cast<byte, int64>(span), shape)
                | other -> failtestf "%s: unsupported dtype %A for %s" path other p.Name
            yield p.Name, t ]
    |> Map.ofList

/// One fixture case: its JSON root and its tensors.
type Case = { Name: string; Json: JsonElement; Tensors: Map<string, Tensor> }

let loadCase (name: string) : Case =
    let json = Path.Combine(Support.fixturesDir, name + ".json")
    if not (File.Exists json) then failtestf "missing fixture %s" json
    { Name = name
      Json = JsonDocument.Parse(File.ReadAllText json).RootElement
      Tensors = readSafetensors (json.Substring(0, json.Length - ".json".Length) + ".safetensors") }

let private ints (j: JsonElement) = [| for e in j.EnumerateArray() -> e.GetInt32() |]
let private prop (j: JsonElement) (name: string) =
    match j.TryGetProperty name with
    | true, v -> v
    | _ -> failtestf "fixture module %s has no '%s'" (j.GetRawText() |> fun s -> s.Substring(0, min 80 s.Length)) name

let private paddingMode = function
    | "zeros" -> PaddingMode.Zeros | "reflect" -> PaddingMode.Reflect
    | "replicate" -> PaddingMode.Replicate | "circular" -> PaddingMode.Circular
    | other -> failtestf "unknown padding_mode %s" other

/// Rebuilds a module tree from its fixture JSON, taking state from `tensors` under `prefix` + state_dict key.
let rec buildModule (tensors: Map<string, Tensor>) (prefix: string) (j: JsonElement) : Module =
    let typ = str (prop j "type")
    let training = (prop j "training").GetBoolean()
    let args = match j.TryGetProperty "args" with | true, a -> Some a | _ -> None
    let arg name = prop args.Value name
    let tensor name = tensors |> Map.tryFind (prefix + name) |> Option.toObj
    let children () =
        match j.TryGetProperty "children" with
        | true, cs ->
            [ for c in cs.EnumerateArray() ->
                let name = str (prop c "name")
                NamedModule(name, buildModule tensors (prefix + name + ".") (prop c "module")) ]
        | _ -> []
    let ns = str (prop j "namespace")
    let m : Module =
        match typ with
        | "Sequential" -> Sequential.Create(ModuleChildren.Create(children ()), training)
        | _ when ns = "torch.ao.nn.intrinsic" -> FusedModule.Create(typ, [| for c in children () -> c.Module |])
        | _ when ns = "user" -> UserModule.Create(typ, ModuleChildren.Create(children ()), training = training)
        | t when t.StartsWith "Conv" ->
            let transposed = t.StartsWith "ConvTranspose"
            let rank = int t.[t.Length - 2] - int '0'
            let padding =
                let p = arg "padding"
                if p.ValueKind = JsonValueKind.String then ConvPadding.Parse(str p) else ConvPadding.Explicit(ints p)
            Conv.Create(rank, (arg "in_channels").GetInt32(), (arg "out_channels").GetInt32(), ints (arg "kernel_size"),
                        stride = ints (arg "stride"), padding = padding, dilation = ints (arg "dilation"),
                        groups = (arg "groups").GetInt32(), bias = (arg "bias").GetBoolean(),
                        paddingMode = paddingMode (str (arg "padding_mode")), transposed = transposed,
                        outputPadding = (if transposed then ints (arg "output_padding") else [| 0 |]),
                        weight = tensor "weight", biasTensor = tensor "bias", training = training)
        | t when t.StartsWith "BatchNorm" ->
            let momentum = let m = arg "momentum" in if m.ValueKind = JsonValueKind.Null then Nullable() else Nullable(m.GetDouble())
            BatchNorm.Create(int t.[t.Length - 2] - int '0', (arg "num_features").GetInt32(), eps = (arg "eps").GetDouble(),
                             momentum = momentum, affine = (arg "affine").GetBoolean(),
                             trackRunningStats = (arg "track_running_stats").GetBoolean(), weight = tensor "weight",
                             bias = tensor "bias", runningMean = tensor "running_mean", runningVar = tensor "running_var",
                             numBatchesTracked = tensor "num_batches_tracked", training = training)
        | "Linear" ->
            Linear.Create((arg "in_features").GetInt32(), (arg "out_features").GetInt32(), bias = (arg "bias").GetBoolean(),
                          weight = tensor "weight", biasTensor = tensor "bias", training = training)
        | "ReLU" | "ReLU6" | "Hardswish" | "Hardsigmoid" | "SiLU" ->
            Activation.Create(Enum.Parse<ActivationKind> typ, (arg "inplace").GetBoolean(), training)
        | "Identity" -> Identity.Create training
        | "Flatten" -> Flatten.Create((arg "start_dim").GetInt32(), (arg "end_dim").GetInt32(), training)
        | "Dropout" -> Dropout.Create((arg "p").GetDouble(), (arg "inplace").GetBoolean(), training)
        | "AdaptiveAvgPool2d" ->
            let o = arg "output_size"
            AdaptiveAvgPool2d.Create((if o.ValueKind = JsonValueKind.Array then ints o else [| o.GetInt32() |]), training)
        | other -> failtestf "the fusion tests cannot rebuild a %s" other
    m.WithTraining training

/// The unfused model of a case.
let model (c: Case) = buildModule c.Tensors "model." (prop c.Json "model")

/// PyTorch's fused model of a case (state from the `fused.` tensors).
let expectedFused (c: Case) = buildModule c.Tensors "fused." (prop (prop c.Json "expect") "fused_model")

/// `modules_to_fuse` exactly as given to PyTorch.
let fuseArgument (c: Case) = prop c.Json "fuse"

let isQat (c: Case) = (prop c.Json "qat").GetBoolean()
let outcome (c: Case) = str (prop (prop c.Json "expect") "outcome")
let errorMessage (c: Case) = str (prop (prop c.Json "expect") "error_message")
let tolerance (c: Case) = let e = prop c.Json "expect" in (prop e "rtol").GetDouble(), (prop e "atol").GetDouble()

/// Every case name in the fixture folder.
let caseNames () : string[] =
    Support.fixtureCases () |> Array.map (fun f -> match Path.GetFileNameWithoutExtension f with | null -> f | n -> n)
