module Fusion.Dsl.Tests.IO.ModuleJsonTests

open System
open System.Collections.Generic
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.IO.IOSupport
open Fusion.Dsl.Conformance

let private src = "<test>"

/// The tensors of a tree as a plain state dictionary.
let private stateOf (m: Module) = Dictionary<string, Tensor>(m.StateDict())

let private withoutForward (m: Module) =
    match m with
    | :? UserModule as u -> u.WithForward(null) :> Module
    | m -> m

let private roundTrip (m: Module) = ModuleJson.Read(ModuleJson.Write m, stateOf m, "", src)

/// One module in JSON, with tensors, for the error tests: a Sequential holding a Conv2d(3→4, k3, bias) and a ReLU.
let private seqJson (conv: string) =
    sprintf """{"type":"Sequential","namespace":"torch.nn","training":false,"children":[
      {"name":"0","module":%s},
      {"name":"1","module":{"type":"ReLU","namespace":"torch.nn","training":false,"args":{"inplace":false}}}]}""" conv

let private convJson (extra: string) =
    sprintf """{"type":"Conv2d","namespace":"torch.nn","training":false,"args":{"in_channels":3,"out_channels":4,"kernel_size":[3,3]%s},"state":["weight","bias"]}""" extra

let private convTensors () =
    Dictionary<string, Tensor>(dict [ "0.weight", Tensor.Zeros(4, 3, 3, 3); "0.bias", Tensor.Zeros 4 ])

let private readFails (json: string) (tensors: IDictionary<string, Tensor>) (parts: string list) =
    let ro = Dictionary<string, Tensor>(tensors) :> IReadOnlyDictionary<_, _>
    expectFormatError src parts (fun () -> ModuleJson.Read(json, ro, "", src) |> ignore)

let private fixtureTests =
    Support.fixtureCases ()
    |> Array.collect (fun json ->
        let name = stem json
        let doc = lazy (JsonDocument.Parse(File.ReadAllText json))
        let case = lazy (FixtureCase.Load json)
        let trees () =
            [ yield "model", case.Value.Model, doc.Value.RootElement.GetProperty "model"
              match case.Value.FusedModel with
              | null -> ()
              | f -> yield "fused", f, doc.Value.RootElement.GetProperty("expect").GetProperty "fused_model" ]
        [| test (sprintf "%s: written trees equal PyTorch's JSON (names, order, values)" name) {
               for label, m, expected in trees () do
                   let written = JsonDocument.Parse(ModuleJson.Write m).RootElement
                   Expect.equal (canonical written) (canonical expected) (sprintf "%s tree as PyTorch wrote it" label)
           }
           test (sprintf "%s: write then read gives an equal tree with bit-identical tensors" name) {
               for label, m, _ in trees () do
                   let back = roundTrip m
                   Expect.equal back (withoutForward m) (sprintf "%s tree (the root graph travels separately)" label)
                   Expect.sequenceEqual (back.StateDict()) (m.StateDict()) (sprintf "%s tensors bit for bit" label)
               match case.Value.Forward with
               | null -> Expect.equal (doc.Value.RootElement.GetProperty("forward").ValueKind) JsonValueKind.Null "no graph for a Sequential root"
               | g ->
                   Expect.equal (GraphJson.Read(GraphJson.Write g, src)) g "graph round trip"
                   let expected = doc.Value.RootElement.GetProperty "forward"
                   Expect.equal (canonical (JsonDocument.Parse(GraphJson.Write g).RootElement)) (canonical expected) "graph as PyTorch wrote it"
           } |])
    |> List.ofArray

let private everyLayer () : Module =
    let children =
        ModuleChildren.Create(
            [| NamedModule("same", Conv.Create(2, 3, 4, [| 3; 5 |], padding = ConvPadding.Same, paddingMode = PaddingMode.Reflect, seed = 1))
               NamedModule("valid", Conv.Create(1, 4, 4, [| 3 |], padding = ConvPadding.Valid, groups = 2, bias = false, seed = 2))
               NamedModule("tconv", Conv.Create(3, 4, 6, [| 3 |], stride = [| 2 |], padding = ConvPadding.Explicit 1, outputPadding = [| 1 |], transposed = true, seed = 3))
               NamedModule("bn", BatchNorm.Create(2, 4, eps = 1e-3, momentum = Nullable(), training = true))
               NamedModule("bnx", BatchNorm.Create(1, 4, affine = false, trackRunningStats = false))
               NamedModule("lin", Linear.Create(5, 2, bias = false, seed = 4))
               NamedModule("act", Sequential.Create([| for k in Enum.GetValues<ActivationKind>() -> Activation.Create(k, inplace = (k = ActivationKind.ReLU)) :> Module |]))
               NamedModule("drop", Dropout.Create(0.25, training = true))
               NamedModule("flat", Flatten.Create(2, 3))
               NamedModule("maxp", MaxPool2d.Create([| 3 |], [| 2; 1 |], [| 1 |], [| 2 |], true))
               NamedModule("avgp", AvgPool2d.Create([| 2; 4 |], null, [| 1; 2 |], true, false))
               NamedModule("adap", AdaptiveAvgPool2d.Create([| 3; 1 |]))
               NamedModule("id", Identity.Create true)
               NamedModule("fused", FusedModule.Create("ConvBnReLU2d", Conv.Create(2, 2, 2, [| 1 |], seed = 5), BatchNorm.Create(2, 2), Activation.Create ActivationKind.ReLU).WithTraining true)
               NamedModule("dsl", FusedModule.Create("ConvReLU6_2d", Conv.Create(2, 2, 2, [| 1 |], seed = 6), Activation.Create ActivationKind.ReLU6))
               NamedModule("stub", UserModule.Create("QuantStub", ModuleChildren.Empty, state = TensorDict.Create(struct ("scale", Tensor.Full(0.5f, 1))))) |])
    UserModule.Create("Everything", children) :> Module

[<Tests>]
let tests =
    testList "IO.ModuleJson" [
        testList "fixtures" fixtureTests

        test "every supported layer and option round-trips (momentum None, padding same/valid, transposed, pools, fused kinds)" {
            let m = everyLayer ()
            Expect.equal (roundTrip m) m "equal after write and read"
            let json = ModuleJson.Write m
            Expect.stringContains json "\"momentum\": null" "momentum None kept"
            Expect.stringContains json "\"padding\": \"same\"" "padding as a string"
            Expect.stringContains json "\"eps\": 0.001" "eps as a float"
            Expect.stringContains json "\"namespace\": \"fusion.dsl\"" "project-specific fused kind"
        }
        test "pooling sizes keep the form PyTorch recorded, integer or pair, through read and write" {
            // As torchvision's networks record them: ResNet's MaxPool2d(kernel_size=3, stride=2, padding=1) and
            // AdaptiveAvgPool2d((1, 1)), MobileNetV3's AdaptiveAvgPool2d(1); and mixed forms in one module.
            let forms =
                [ """{"type":"MaxPool2d","namespace":"torch.nn","training":false,"args":{"kernel_size":3,"stride":2,"padding":1,"dilation":1,"ceil_mode":false}}"""
                  """{"type":"MaxPool2d","namespace":"torch.nn","training":false,"args":{"kernel_size":[3,3],"stride":[2,1],"padding":1,"dilation":[1,1],"ceil_mode":true}}"""
                  """{"type":"AvgPool2d","namespace":"torch.nn","training":false,"args":{"kernel_size":2,"stride":[2,2],"padding":0,"ceil_mode":false,"count_include_pad":true}}"""
                  """{"type":"AvgPool2d","namespace":"torch.nn","training":false,"args":{"kernel_size":[2,2],"stride":2,"padding":[0,1],"ceil_mode":false,"count_include_pad":false}}"""
                  """{"type":"AdaptiveAvgPool2d","namespace":"torch.nn","training":false,"args":{"output_size":[1,1]}}"""
                  """{"type":"AdaptiveAvgPool2d","namespace":"torch.nn","training":false,"args":{"output_size":1}}""" ]
            for json in forms do
                let m = ModuleJson.Read(json, Dictionary<string, Tensor>(), "", src)
                let written = ModuleJson.Write m
                Expect.equal (canonical (JsonDocument.Parse(written).RootElement)) (canonical (JsonDocument.Parse(json).RootElement)) (sprintf "written as read: %s" json)
                Expect.equal (ModuleJson.Read(written, Dictionary<string, Tensor>(), "", src)) m "reads back equal"
        }
        test "the integer and pair forms of a pooling size are the same window but different modules, as in PyTorch" {
            let scalar = MaxPool2d.Create([| 3 |], [| 2 |], [| 1 |])
            let pair = MaxPool2d.Create([| 3; 3 |], [| 2; 2 |], [| 1; 1 |], [| 1; 1 |])
            Expect.equal scalar.KernelSize pair.KernelSize "same kernel"
            let args (m: Module) = [ for kv in m.Arguments -> kv.Key, (match kv.Value with :? seq<int> as xs -> List.ofSeq xs | v -> [ unbox<bool> v |> fun b -> if b then 1 else 0 ]) ]
            Expect.equal (args scalar) (args pair) "Arguments list pairs for both"
            Expect.equal (args scalar |> List.head) ("kernel_size", [ 3; 3 ]) "a pair"
            Expect.sequenceEqual scalar.ScalarArguments [ "kernel_size"; "stride"; "padding"; "dilation" ] "defaults padding=0, dilation=1 are integers"
            Expect.isEmpty pair.ScalarArguments "every size given as a pair"
            Expect.notEqual (scalar :> Module) (pair :> Module) "MaxPool2d(3) differs from MaxPool2d((3, 3))"
            Expect.sequenceEqual (MaxPool2d.Create([| 3; 3 |])).ScalarArguments [ "padding"; "dilation" ] "stride defaults to the kernel's form"
            Expect.sequenceEqual (AvgPool2d.Create([| 2 |], [| 2; 1 |])).ScalarArguments [ "kernel_size"; "padding" ] "each size on its own"
            Expect.isTrue (AdaptiveAvgPool2d.Create([| 1 |])).OutputSizeIsScalar "AdaptiveAvgPool2d(1)"
            Expect.isFalse (AdaptiveAvgPool2d.Create([| 1; 1 |])).OutputSizeIsScalar "AdaptiveAvgPool2d((1, 1))"
            Expect.notEqual (AdaptiveAvgPool2d.Create([| 1 |]) :> Module) (AdaptiveAvgPool2d.Create([| 1; 1 |])) "unequal modules"
            Expect.equal (scalar.WithTraining(true).WithTraining(false)) (scalar :> Module) "the form survives rebuilding"
            let json = ModuleJson.Write(Sequential.Create(scalar, pair, AdaptiveAvgPool2d.Create([| 1 |])))
            Expect.stringContains json "\"kernel_size\": 3," "integer form written as an integer"
            Expect.stringContains json "\"output_size\": 1" "AdaptiveAvgPool2d(1) written as 1"
        }
        test "an integral float stays a float in JSON" {
            let m = Dropout.Create(1.0) :> Module
            Expect.stringContains (ModuleJson.Write m) "\"p\": 1.0" "written with a fraction"
            Expect.equal (roundTrip m) m "reads back"
        }

        test "an unknown torch.nn type names the type and the path" {
            let e = readFails (seqJson ((convJson "").Replace("Conv2d", "Frobnicate2d"))) (convTensors ()) [ "Frobnicate2d"; "model.0" ]
            Expect.equal e.Key "model.0" "location"
        }
        test "an opaque module keeps its type, namespace, plain arguments, print layout, state and children exactly" {
            let json = """{"type":"MultiheadAttention","namespace":"torch.nn","training":false,"opaque":true,
              "args":{"embed_dim":4,"num_heads":2,"dropout":0.0,"batch_first":false,"kdim":null,"shape":[1,[2,3]]},
              "extra_repr":"","state":["in_proj_weight"],
              "children":[{"name":"out_proj","module":{"type":"NonDynamicallyQuantizableLinear","namespace":"torch.nn.modules.linear","training":false,"opaque":true,"extra_repr":"in_features=4, out_features=4, bias=True","state":["weight","bias"]}}]}"""
            let tensors = Dictionary<string, Tensor>(dict [ "in_proj_weight", Tensor.Zeros(12, 4); "out_proj.weight", Tensor.Zeros(4, 4); "out_proj.bias", Tensor.Zeros 4 ])
            let m = ModuleJson.Read(json, tensors, "", src)
            Expect.isTrue (m :? OpaqueModule) "opaque"
            Expect.equal m.Namespace "torch.nn" "namespace"
            Expect.equal [ for kv in m.Arguments -> kv.Key ] [ "embed_dim"; "num_heads"; "dropout"; "batch_first"; "kdim"; "shape" ] "arguments in order"
            let inner = ModulePath.Get(m, "out_proj")
            Expect.equal inner.Namespace "torch.nn.modules.linear" "a class outside torch.nn's exports keeps its module"
            Expect.equal (ModuleRepr.Print inner) "NonDynamicallyQuantizableLinear(in_features=4, out_features=4, bias=True)" "PyTorch's print layout"
            Expect.equal (roundTrip m) m "written back equal"
            Expect.equal (canonical (JsonDocument.Parse(ModuleJson.Write m).RootElement)) (canonical (JsonDocument.Parse(json).RootElement)) "the same JSON"
        }
        test "extra_repr on a modelled layer, or an opaque argument that is an object, is refused" {
            readFails ((seqJson (convJson "")).Replace("\"training\":false,\"args\"", "\"training\":false,\"extra_repr\":\"x\",\"args\"")) (convTensors ()) [ "extra_repr"; "opaque" ] |> ignore
            readFails """{"type":"GELU","namespace":"torch.nn","opaque":true,"training":false,"args":{"approximate":{"a":1}}}""" (Dictionary()) [ "approximate"; "an object" ] |> ignore
        }
        test "an unknown namespace is refused" {
            readFails (seqJson ((convJson "").Replace("\"namespace\":\"torch.nn\",\"training\":false,\"args\":{\"in", "\"namespace\":\"torch.quantized\",\"training\":false,\"args\":{\"in"))) (convTensors ()) [ "torch.quantized"; "model.0" ] |> ignore
        }
        test "an unknown argument is refused by name" {
            readFails (seqJson (convJson ",\"frob\":1")) (convTensors ()) [ "'frob'"; "model.0" ] |> ignore
        }
        test "a missing required argument is refused by name" {
            readFails (seqJson ((convJson "").Replace("\"in_channels\":3,", ""))) (convTensors ()) [ "in_channels"; "model.0" ] |> ignore
        }
        test "an argument of the wrong JSON kind is refused" {
            readFails (seqJson (convJson ",\"groups\":\"one\"")) (convTensors ()) [ "groups"; "integer" ] |> ignore
        }
        test "a tensor listed in state but absent names the key" {
            let t = convTensors ()
            t.Remove "0.bias" |> ignore
            let e = readFails (seqJson (convJson "")) t [ "0.bias"; "missing tensor" ]
            Expect.equal e.Key "0.bias" "key"
        }
        test "a tensor of the wrong shape names the module and the expected shape" {
            let t = convTensors ()
            t["0.weight"] <- Tensor.Zeros(4, 3, 3, 2)
            readFails (seqJson (convJson "")) t [ "model.0"; "weight"; "[4, 3, 3, 3]"; "[4, 3, 3, 2]" ] |> ignore
        }
        test "a needed tensor the state list omits is refused instead of being made up" {
            readFails (seqJson ((convJson "").Replace("\"state\":[\"weight\",\"bias\"]", "\"state\":[\"weight\"]"))) (dict [ "0.weight", Tensor.Zeros(4, 3, 3, 3) ]) [ "'bias'"; "does not name it" ] |> ignore
        }
        test "a tensor the module cannot have is refused" {
            readFails (seqJson (convJson ",\"bias\":false")) (convTensors ()) [ "model.0"; "bias" ] |> ignore
        }
        test "a tensor no module names is refused" {
            let t = convTensors ()
            t["2.weight"] <- Tensor.Zeros 1
            let e = readFails (seqJson (convJson "")) t [ "2.weight"; "belongs to no module" ]
            Expect.equal e.Key "2.weight" "key"
        }
        test "an int64 weight is refused" {
            let t = convTensors ()
            t["0.bias"] <- Tensor.FromInt64(ReadOnlySpan [| 0L; 0L; 0L; 0L |], 4)
            readFails (seqJson (convJson "")) t [ "model.0"; "float32" ] |> ignore
        }
        test "fused children must be named 0, 1, 2" {
            let json = """{"type":"ConvReLU2d","namespace":"torch.ao.nn.intrinsic","training":false,"children":[
              {"name":"0","module":{"type":"Conv2d","namespace":"torch.nn","training":false,"args":{"in_channels":3,"out_channels":4,"kernel_size":[3,3]},"state":["weight","bias"]}},
              {"name":"relu","module":{"type":"ReLU","namespace":"torch.nn","training":false,"args":{"inplace":false}}}]}"""
            readFails json (convTensors ()) [ "'relu'"; "named 0, 1, 2" ] |> ignore
        }
        test "a fused group with the wrong children is refused with the kinds" {
            let json = (seqJson (convJson "")).Replace("\"type\":\"Sequential\",\"namespace\":\"torch.nn\"", "\"type\":\"ConvBn2d\",\"namespace\":\"torch.ao.nn.intrinsic\"")
            readFails json (convTensors ()) [ "ConvBn2d"; "Conv2d, ReLU" ] |> ignore
        }
        test "a leaf layer with children is refused" {
            let json = (convJson "").Replace("\"state\"", "\"children\":[{\"name\":\"x\",\"module\":{\"type\":\"Identity\",\"namespace\":\"torch.nn\",\"training\":false}}],\"state\"")
            readFails json (dict [ "weight", Tensor.Zeros(4, 3, 3, 3); "bias", Tensor.Zeros 4 ]) [ "leaf"; "children" ] |> ignore
        }
        test "malformed JSON is a format error" {
            readFails "{\"type\": " (dict []) [ "not valid JSON" ] |> ignore
        }
        test "writing refuses hooks and graphs below the root" {
            let hooked = Identity.Create().AddHook(ForwardHook("h", fun _ _ _ -> null))
            Support.throwsOf<ModelFormatException> (fun () -> ModuleJson.Write(Sequential.Create(hooked)) |> ignore)
            |> fun e -> Expect.stringContains e.Message "hooks" "names the hooks"
            let g = Graph([ GraphNode(NodeOp.Placeholder, "x"); GraphNode(NodeOp.Output, "out", args = [ GraphArg.Ref "x" ]) ])
            let inner = UserModule.Create("Inner", ModuleChildren.Empty, g)
            let e = Support.throwsOf<ModelFormatException> (fun () -> ModuleJson.Write(Sequential.Create(inner)) |> ignore)
            Expect.stringContains e.Message "model.0" "names the module"
        }

        testList "graph" [
            test "constants keep their kinds: long, double, bool, string, null, nested lists, kwargs" {
                let json = """[{"op":"placeholder","name":"x"},
                  {"op":"call_method","name":"r","target":"reshape","args":[{"ref":"x"},[-1,[2,3.0]],true,"s",null],"kwargs":{"k":2.5,"j":[{"ref":"x"}]}},
                  {"op":"get_attr","name":"w","target":"a.weight"},
                  {"op":"output","name":"output","args":[{"ref":"r"}]}]"""
                let g = GraphJson.Read(json, src)
                let r = g.Nodes[1]
                Expect.equal r.Op NodeOp.CallMethod "op"
                Expect.equal r.Args[0] (GraphArg.Ref "x") "ref"
                Expect.equal r.Args[1] (GraphArg.List(GraphArg.Const -1L, GraphArg.List(GraphArg.Const 2L, GraphArg.Const 3.0))) "nested list with long and double"
                Expect.equal ((nonNull ((r.Args[1] :?> ListArg).Items[0] :?> ConstArg).Value).GetType()) typeof<int64> "integer read as long"
                Expect.equal r.Args[2] (GraphArg.Const true) "bool"
                Expect.equal r.Args[3] (GraphArg.Const "s") "string"
                Expect.equal r.Args[4] (GraphArg.Const null) "null"
                Expect.equal (r.Kwarg "k") (GraphArg.Const 2.5) "kwarg double"
                Expect.equal g.Nodes[2].Op NodeOp.GetAttr "get_attr"
                Expect.equal (GraphJson.Read(GraphJson.Write g, src)) g "round trip keeps every kind"
                Expect.stringContains (GraphJson.Write g) "3.0" "a float stays a float"
            }
            test "tagged Python constants and non-finite floats keep their meaning through read and write" {
                let json = """[{"op":"placeholder","name":"x"},
                  {"op":"call_function","name":"i","target":"_operator.getitem","args":[{"ref":"x"},[{"slice":[null,2,null]},{"ellipsis":true},{"slice":[1,null,-1]}]]},
                  {"op":"call_method","name":"t","target":"to","args":[{"ref":"i"},{"dtype":"torch.float16"}],"kwargs":{"device":{"device":"cpu"},"memory_format":{"memory_format":"torch.channels_last"}}},
                  {"op":"call_method","name":"m","target":"masked_fill","args":[{"ref":"t"},{"ref":"t"},{"float":"-inf"}]},
                  {"op":"output","name":"output","args":[{"ref":"m"}]}]"""
                let g = GraphJson.Read(json, src)
                let index = (g.Nodes[1].Args[1] :?> ListArg).Items
                Expect.equal index[0] (GraphArg.Const(PyConstant.Slice(Nullable(), Nullable 2L, Nullable()))) ":2"
                Expect.equal index[1] (GraphArg.Const(PyConstant(PyConstantKind.Ellipsis))) "..."
                Expect.equal index[2] (GraphArg.Const(PyConstant.Slice(Nullable 1L, Nullable(), Nullable -1L))) "1::-1"
                Expect.equal g.Nodes[2].Args[1] (GraphArg.Const(PyConstant(PyConstantKind.DType, "torch.float16"))) "dtype"
                Expect.equal g.Nodes[3].Args[2] (GraphArg.Const Double.NegativeInfinity) "-inf"
                Expect.equal (GraphJson.Read(GraphJson.Write g, src)) g "round trip keeps every constant"
            }
            test "a tagged constant with two tags, an unknown tag or a malformed slice is refused by name" {
                let bad (arg: string) (words: string) =
                    let json = sprintf """[{"op":"placeholder","name":"x"},{"op":"call_function","name":"f","target":"g","args":[%s]},{"op":"output","name":"o","args":[{"ref":"f"}]}]""" arg
                    let e = Support.throwsOf<ModelFormatException> (fun () -> GraphJson.Read(json, src) |> ignore)
                    Expect.stringContains e.Message words arg
                bad """{"dtype":"torch.float32","device":"cpu"}""" "exactly one"
                bad """{"tuple":[1]}""" "tuple"
                bad """{"slice":[1,2]}""" "[start, stop, step]"
                bad """{"slice":[1.5,null,null]}""" "integers or null"
                bad """{"float":"huge"}""" "huge"
            }
            test "an unknown op is refused with the node" {
                let e = Support.throwsOf<ModelFormatException> (fun () -> GraphJson.Read("""[{"op":"call_magic","name":"m"}]""", src) |> ignore)
                Expect.stringContains e.Message "call_magic" "op named"
                Expect.equal e.Key "forward[0]" "node location"
            }
            test "a reference to a later or absent node is refused" {
                let e = Support.throwsOf<ModelFormatException> (fun () ->
                    GraphJson.Read("""[{"op":"placeholder","name":"x"},{"op":"output","name":"o","args":[{"ref":"y"}]}]""", src) |> ignore)
                Expect.stringContains e.Message "'y'" "missing node named"
            }
            test "an object argument other than a reference is refused" {
                Support.throwsOf<ModelFormatException> (fun () ->
                    GraphJson.Read("""[{"op":"placeholder","name":"x"},{"op":"output","name":"o","args":[{"reff":"x"}]}]""", src) |> ignore)
                |> fun e -> Expect.stringContains e.Message "reff" "field named"
            }
        ]
    ]
