/// The classes of hostile input issue 12 found, one example each, through the library: every one ends in one of the
/// library's own exceptions naming the problem, quickly and without a large allocation. (The fuzz test generates more.)
module Fusion.Dsl.Tests.Hostile.HostileInputTests

open System
open System.IO
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Conformance
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests

/// At most this many bytes may be allocated by one refused input (the reader, the model, a forward pass of the small
/// doc_example model): 64 MiB, where the unchecked code allocated gigabytes.
let refusalAllocationBound = 64L <<< 20

/// A copy of the doc_example_list_of_lists fixture, its JSON edited, loaded; and the allocation it took.
let private withEditedFixture (edit: JsonNode -> unit) (run: string -> unit) =
    let dir = Directory.CreateTempSubdirectory("fusion-hostile-").FullName
    try
        let src = Support.sharedFixture "doc_example_list_of_lists"
        let root = JsonNode.Parse(File.ReadAllText src) |> nonNull
        edit root
        let json = Path.Combine(dir, "case.json")
        File.WriteAllText(json, root.ToJsonString())
        File.Copy(nonNull (Path.ChangeExtension(src, ".safetensors")), Path.Combine(dir, "case.safetensors"))
        run json
    finally
        Directory.Delete(dir, true)

let private conv1Args (root: JsonNode) = (root["model"] |> nonNull)["children"] |> nonNull |> fun c -> ((c[0] |> nonNull)["module"] |> nonNull)["args"] |> nonNull

/// Loads the case and runs the unfused model on its input; the refusal must be of the family and name <paramref name="words"/>.
let private expectRefused (words: string list) (json: string) =
    let before = GC.GetTotalAllocatedBytes true
    let e =
        try
            let c = FixtureCase.Load json
            Forward.Run(c.Model, c.Input) |> ignore
            Fuser.FuseModules(c.Model, c.Fuse) |> ignore
            failtest "accepted"
        with
        | :? ModelFormatException | :? ForwardException | :? FusionException as e -> e
    for w in words do Expect.stringContains e.Message w "the message names the problem"
    let allocated = GC.GetTotalAllocatedBytes true - before
    Expect.isLessThan allocated refusalAllocationBound "refused before allocating for the absurd size"

let private setArg (name: string) (value: JsonNode) (root: JsonNode) = (conv1Args root)[name] <- value

let private ints (xs: int64 list) = let a = JsonArray() in (for x in xs do a.Add(JsonValue.Create x)); a :> JsonNode

[<Tests>]
let tests =
    testList "Hostile" [
        testList "extreme layer arguments" [
            for name, value, words in
                [ "dilation", [ (1L <<< 31) - 1L; 1L ], [ "dilation"; "limit" ]
                  "padding", [ 65536L; 65536L ], [ "padd"; "limit" ]
                  "padding", [ 40000L; 40000L ], [ "padd"; "limit" ]
                  "dilation", [ 1L <<< 30; 1L ], [ "dilation" ]
                  "stride", [ (1L <<< 31) - 1L; 1L ], [ "stride" ]
                  "padding", [ (1L <<< 31) - 1L; 1L ], [ "padding" ] ] do
                test (sprintf "Conv2d %s %A is refused with a message, not a crash or a wrapped shape" name value) {
                    withEditedFixture (setArg name (ints value)) (expectRefused words)
                }
            test "a stride far larger than the input gives PyTorch's one output position, quickly" {
                // PyTorch: (226 - 2 - 1) / 2^24 + 1 = 1 position per dimension.
                withEditedFixture (setArg "stride" (ints [ 1L <<< 24; 1L <<< 24 ])) (fun json ->
                    let c = FixtureCase.Load json
                    let y = Forward.Run(ModulePath.Get(c.Model, "conv1"), c.Input)
                    Expect.equal (y.Size 2, y.Size 3) (1, 1) "one output position")
            }
            test "a convolution whose stride passes the input's end computes the float64 reference's single position" {
                // Padded 5x7 input, kernel 3: one output row (stride 1000 > 5 - 3), three columns at stride 2.
                for channels in [ 3; 32 ] do
                    let conv = Conv.Create(2, channels, channels, [| 3 |], stride = [| 1000; 2 |], padding = ConvPadding.Explicit(1), seed = 4)
                    let x = Fusion.Dsl.Layers.Init.Normal(Random 5, 1.0, 1, channels, 3, 5)
                    let y = Forward.Run(conv, x)
                    Expect.sequenceEqual y.Dimensions [ 1; channels; 1; 3 ] "PyTorch's output shape"
                    let expected = Fusion.Dsl.Reference.NaiveReference.Conv(conv, x)
                    Expect.isTrue (y.IsCloseTo(expected, Support.Tol.kernelRel, Support.Tol.kernelAbs)) "values of the reference"
            }
            test "ConvTranspose2d with dilation 2^31-1 is refused, not given a wrapped output shape" {
                Expect.throwsT<ArgumentException> (fun () ->
                    Conv.Create(2, 2, 2, [| 3 |], dilation = [| Int32.MaxValue |], transposed = true) |> ignore) "refused"
            }
            test "AdaptiveAvgPool2d with output_size 100000 is refused by the forward pass, naming the module" {
                let m = Sequential.Create(AdaptiveAvgPool2d.Create([| 100000 |]))
                let e = Expect.throwsT<ForwardException> (fun () -> Forward.Run(m, Tensor.Zeros(1, 3, 8, 8)) |> ignore) "refused"
                ()
            }
        ]
        testList "declared sizes" [
            test "a BatchNorm declaring 2e9 features without its tensors is refused before anything is allocated" {
                withEditedFixture (fun root ->
                    let bn = (((root["model"] |> nonNull)["children"] |> nonNull)[1] |> nonNull)["module"] |> nonNull
                    (bn["args"] |> nonNull)["num_features"] <- JsonValue.Create 2000000000
                    bn["state"] <- JsonArray()) (expectRefused [ "BatchNorm2d"; "state" ])
            }
            test "a Conv2d declaring 40000x40000 channels with the file's small tensors is refused before allocating" {
                withEditedFixture (fun root ->
                    let a = conv1Args root
                    a["in_channels"] <- JsonValue.Create 40000
                    a["out_channels"] <- JsonValue.Create 40000) (expectRefused [ "weight" ])
            }
            test "a tensor shape over the element limit is refused" {
                Expect.throwsT<ArgumentException> (fun () -> Tensor.Zeros(1 <<< 15, 1 <<< 14) |> ignore) "over 2^28 elements"
            }
        ]
        testList "unbounded reads" [
            for what, read in
                [ "a model file", (fun p -> ModelFile.Read p |> ignore)
                  "a fixture", (fun p -> FixtureCase.Load p |> ignore)
                  "a safetensors file", (fun p -> SafeTensors.Read p |> ignore)
                  "a groups file", (fun p -> FuseSpecJson.Read p |> ignore) ] do
                test (sprintf "/dev/zero as %s is refused at once, unread" what) {
                    let e = Expect.throwsT<ModelFormatException> (fun () -> read "/dev/zero") "refused"
                    ()
                }
                test (sprintf "a directory as %s is refused with the library's error" what) {
                    let dir = Directory.CreateTempSubdirectory("fusion-dir-").FullName
                    try
                        let e = Support.throwsOf<ModelFormatException> (fun () -> read (Path.Combine(dir, "x.json") |> fun p -> (Directory.CreateDirectory p).FullName))
                        Expect.stringContains e.Message "directory" "names the problem"
                    finally Directory.Delete(dir, true)
                }
        ]
        testList "readers and rules" [
            test "a lone surrogate in a model-JSON string is refused by the reader" {
                withEditedFixture ignore (fun json ->
                    // Written as the escape itself: a JSON writer would replace the lone surrogate.
                    File.WriteAllText(json, File.ReadAllText(json).Replace("\"name\":\"relu1\"", "\"name\":\"\\ud800\""))
                    expectRefused [ "surrogate" ] json)
            }
            test "a lone surrogate in a groups file is refused by the reader" {
                let f = Path.GetTempFileName()
                try
                    File.WriteAllText(f, "[[\"\\ud800\"]]")
                    let e = Support.throwsOf<ModelFormatException> (fun () -> FuseSpecJson.Read f |> ignore)
                    Expect.stringContains e.Message "surrogate" "names the problem"
                finally File.Delete f
            }
            test "an int64 input is refused by the forward pass with its error" {
                let m = Sequential.Create(Identity.Create())
                Support.throwsOf<ForwardException> (fun () -> Forward.Run(m, Tensor.FromInt64([| 1L |], 1)) |> ignore) |> ignore
            }
            test "a graph reshape to an int32-overflowing size is refused with the forward's error" {
                withEditedFixture (fun root ->
                    let fwd = root["forward"] |> nonNull :?> JsonArray
                    let out = fwd[fwd.Count - 1] |> nonNull
                    let node = JsonObject()
                    node["op"] <- JsonValue.Create "call_method"
                    node["name"] <- JsonValue.Create "r"
                    node["target"] <- JsonValue.Create "reshape"
                    let args = JsonArray()
                    let r = JsonObject() in r["ref"] <- JsonValue.Create "relu2"; args.Add r
                    args.Add(JsonValue.Create -1); args.Add(JsonValue.Create 2147483648L)
                    node["args"] <- args
                    fwd.Insert(fwd.Count - 1, node)
                    let oargs = JsonArray() in (let r2 = JsonObject() in r2["ref"] <- JsonValue.Create "r"; oargs.Add r2)
                    out["args"] <- oargs) (expectRefused [])
            }
            test "a graph get_attr of a missing path is refused by the reader" {
                withEditedFixture (fun root ->
                    let fwd = root["forward"] |> nonNull :?> JsonArray
                    let node = JsonObject()
                    node["op"] <- JsonValue.Create "get_attr"
                    node["name"] <- JsonValue.Create "w"
                    node["target"] <- JsonValue.Create "nope.weight"
                    fwd.Insert(1, node)) (expectRefused [ "nope" ])
            }
            test "a user-namespace module typed BatchNorm2d after a Conv2d is not a BatchNorm to the rules" {
                let fake = UserModule.Create("BatchNorm2d", ModuleChildren.Create())
                let m = Sequential.Create(Conv.Create(2, 3, 4, [| 3 |]), fake)
                let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModules(m, [ [ "0"; "1" ] |> Seq.ofList ]) |> ignore)
                Expect.equal e.Kind FusionErrorKind.NoRule "no rule for a user module, whatever its type name"
            }
            test "fusing inside an already fused module is refused with a typed error" {
                let c = FixtureCase.Load(Support.sharedFixture "doc_example_list_of_lists")
                let fused = Fuser.FuseModules(c.Model, c.Fuse)
                let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModules(fused, [ [ "conv1.0"; "conv1.1" ] |> Seq.ofList ]) |> ignore)
                Expect.stringContains e.Message "conv1" "names the fused module"
            }
        ]
    ]
