/// Test-only stand-in for the IO layer (being written on another branch): reads a fixture's safetensors and builds its
/// module trees from the JSON, just far enough for the engine's conformance tests. Deleted once the IO branch is merged.
module Fusion.Dsl.Tests.Engine.FixtureLite

open System
open System.IO
open System.Text.Json
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

let private str (e: JsonElement) : string =
    match e.GetString() with
    | null -> failwithf "expected a string, got %O" e
    | s -> s

/// Every tensor of a safetensors file by name.
let readSafetensors (path: string) : Map<string, Tensor> =
    let bytes = File.ReadAllBytes path
    let headerLen = int (BitConverter.ToUInt64(bytes, 0))
    use header = JsonDocument.Parse(ReadOnlyMemory(bytes, 8, headerLen))
    [ for p in header.RootElement.EnumerateObject() do
        if p.Name <> "__metadata__" then
            let dtype = (str (p.Value.GetProperty("dtype")))
            let shape = [| for d in p.Value.GetProperty("shape").EnumerateArray() -> d.GetInt32() |]
            let offs = [| for o in p.Value.GetProperty("data_offsets").EnumerateArray() -> o.GetInt32() |]
            let span = ReadOnlySpan(bytes, 8 + headerLen + offs.[0], offs.[1] - offs.[0])
            let t =
                match dtype with
                | "F32" -> Tensor.FromFloat32(Runtime.InteropServices.MemoryMarshal.Cast<byte, float32>(span), shape)
                | "I64" -> Tensor.FromInt64(Runtime.InteropServices.MemoryMarshal.Cast<byte, int64>(span), shape)
                | d -> failwithf "%s: unsupported dtype %s" path d
            yield p.Name, t ]
    |> Map.ofList

let private ints (e: JsonElement) =
    if e.ValueKind = JsonValueKind.Array then [| for x in e.EnumerateArray() -> x.GetInt32() |] else [| e.GetInt32() |]

let rec private graphArg (e: JsonElement) : GraphArg =
    match e.ValueKind with
    | JsonValueKind.Object -> GraphArg.Ref((str (e.GetProperty("ref"))))
    | JsonValueKind.Array -> GraphArg.List([| for x in e.EnumerateArray() -> graphArg x |])
    | JsonValueKind.Number ->
        match e.TryGetInt64() with
        | true, l -> GraphArg.Const(box l)
        | _ -> GraphArg.Const(box (e.GetDouble()))
    | JsonValueKind.True -> GraphArg.Const(box true)
    | JsonValueKind.False -> GraphArg.Const(box false)
    | JsonValueKind.String -> GraphArg.Const(box ((str e)))
    | _ -> GraphArg.Const(null)

let private graph (e: JsonElement) =
    let op =
        function
        | "placeholder" -> NodeOp.Placeholder
        | "call_module" -> NodeOp.CallModule
        | "call_function" -> NodeOp.CallFunction
        | "call_method" -> NodeOp.CallMethod
        | "get_attr" -> NodeOp.GetAttr
        | "output" -> NodeOp.Output
        | o -> failwithf "unknown op %s" o
    Graph(
        [ for n in e.EnumerateArray() ->
            let prop (k: string) = match n.TryGetProperty k with | true, v when v.ValueKind <> JsonValueKind.Null -> Some v | _ -> None
            let args = prop "args" |> Option.map (fun a -> [| for x in a.EnumerateArray() -> graphArg x |]) |> Option.defaultValue [||]
            let kwargs =
                prop "kwargs"
                |> Option.map (fun k -> [| for p in k.EnumerateObject() -> Collections.Generic.KeyValuePair(p.Name, graphArg p.Value) |])
                |> Option.defaultValue [||]
            GraphNode(op ((str (n.GetProperty("op")))), (str (n.GetProperty("name"))),
                      (match prop "target" with Some t -> t.GetString() | None -> null), args, kwargs) ])

/// Builds the module tree of a fixture JSON node; state tensors are `prefix + path + name` in `tensors`.
let rec buildModule (tensors: Map<string, Tensor>) (prefix: string) (forward: JsonElement option) (e: JsonElement) : Module =
    let ty = (str (e.GetProperty("type")))
    let training = e.GetProperty("training").GetBoolean()
    let args = match e.TryGetProperty "args" with | true, a when a.ValueKind = JsonValueKind.Object -> Some a | _ -> None
    let arg (k: string) = args.Value.GetProperty k
    let t name = tensors.TryFind(prefix + name) |> Option.toObj
    let children () =
        match e.TryGetProperty "children" with
        | true, c when c.ValueKind = JsonValueKind.Array ->
            [| for ch in c.EnumerateArray() ->
                let name = (str (ch.GetProperty("name")))
                NamedModule(name, buildModule tensors (prefix + name + ".") None (ch.GetProperty "module")) |]
        | _ -> [||]
    let ns = (str (e.GetProperty("namespace")))
    match ty with
    | _ when ns = "user" ->
        let g = forward |> Option.map graph |> Option.toObj
        UserModule.Create(ty, ModuleChildren.Create(children ()), g, training) :> Module
    | "Sequential" -> Sequential.Create(ModuleChildren.Create(children ()), training) :> Module
    | _ when ns = "torch.ao.nn.intrinsic" -> FusedModule.Create(ty, children () |> Array.map (fun c -> c.Module)) :> Module
    | "Conv1d" | "Conv2d" | "Conv3d" | "ConvTranspose1d" | "ConvTranspose2d" | "ConvTranspose3d" ->
        let transposed = ty.StartsWith "ConvTranspose"
        let rank = int ty.[ty.Length - 2] - int '0'
        let padding =
            match (arg "padding").ValueKind with
            | JsonValueKind.String when (str (arg "padding")) = "same" -> ConvPadding.Same
            | JsonValueKind.String -> ConvPadding.Valid
            | _ -> ConvPadding.Explicit(ints (arg "padding"))
        let mode =
            match (str (arg "padding_mode")) with
            | "zeros" -> PaddingMode.Zeros | "reflect" -> PaddingMode.Reflect
            | "replicate" -> PaddingMode.Replicate | _ -> PaddingMode.Circular
        let outPad = match args.Value.TryGetProperty "output_padding" with | true, v -> ints v | _ -> [| 0 |]
        Conv.Create(rank, (arg "in_channels").GetInt32(), (arg "out_channels").GetInt32(), ints (arg "kernel_size"),
                    ints (arg "stride"), padding, ints (arg "dilation"), (arg "groups").GetInt32(), (arg "bias").GetBoolean(),
                    mode, transposed, outPad, t "weight", t "bias", training) :> Module
    | "BatchNorm1d" | "BatchNorm2d" | "BatchNorm3d" ->
        let momentum = if (arg "momentum").ValueKind = JsonValueKind.Null then Nullable() else Nullable((arg "momentum").GetDouble())
        BatchNorm.Create(int ty.[9] - int '0', (arg "num_features").GetInt32(), (arg "eps").GetDouble(), momentum,
                         (arg "affine").GetBoolean(), (arg "track_running_stats").GetBoolean(), t "weight", t "bias",
                         t "running_mean", t "running_var", t "num_batches_tracked", training) :> Module
    | "Linear" ->
        Linear.Create((arg "in_features").GetInt32(), (arg "out_features").GetInt32(), (arg "bias").GetBoolean(),
                      t "weight", t "bias", training) :> Module
    | "ReLU" | "ReLU6" | "Hardswish" | "Hardsigmoid" | "SiLU" ->
        let inplace = match args with Some a -> (match a.TryGetProperty "inplace" with | true, v -> v.GetBoolean() | _ -> false) | None -> false
        Activation.Create(Enum.Parse<ActivationKind> ty, inplace, training) :> Module
    | "Identity" -> Identity.Create(training) :> Module
    | "Dropout" -> Dropout.Create((arg "p").GetDouble(), (arg "inplace").GetBoolean(), training) :> Module
    | "Flatten" -> Flatten.Create((arg "start_dim").GetInt32(), (arg "end_dim").GetInt32(), training) :> Module
    | "AdaptiveAvgPool2d" -> AdaptiveAvgPool2d.Create(ints (arg "output_size"), training) :> Module
    | _ -> failwithf "FixtureLite: module type %s is not handled" ty

/// One fixture case, as far as the engine tests need it.
type Case =
    { Name: string
      Outcome: string
      Model: Module
      Input: Tensor
      ReferenceOutput: Tensor
      FusedModel: Module option
      FusedOutput: Tensor option
      Rtol: float
      Atol: float }

let load (jsonPath: string) : Case =
    use doc = JsonDocument.Parse(File.ReadAllText jsonPath)
    let root = doc.RootElement
    let tensors = readSafetensors (jsonPath.Substring(0, jsonPath.Length - ".json".Length) + ".safetensors")
    let expect = root.GetProperty "expect"
    let forward = match root.TryGetProperty "forward" with | true, f when f.ValueKind = JsonValueKind.Array -> Some f | _ -> None
    let outcome = (str (expect.GetProperty("outcome")))
    let fused = outcome = "fused"
    { Name = (str (root.GetProperty("name")))
      Outcome = outcome
      Model = buildModule tensors "model." forward (root.GetProperty "model")
      Input = tensors.[(str (root.GetProperty("input")))]
      ReferenceOutput = tensors.[(str (expect.GetProperty("reference_output")))]
      FusedModel = if fused then Some(buildModule tensors "fused." forward (expect.GetProperty "fused_model")) else None
      FusedOutput = if fused then Some tensors.[(str (expect.GetProperty("output")))] else None
      Rtol = expect.GetProperty("rtol").GetDouble()
      Atol = expect.GetProperty("atol").GetDouble() }
