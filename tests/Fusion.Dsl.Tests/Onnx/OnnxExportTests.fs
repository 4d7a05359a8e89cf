/// Export to ONNX checked by real consumers: ONNX's checker accepts every exported file, and ONNX Runtime running it
/// gives the engine's output, for the zoo networks (unfused and fused), a GoogLeNet-shaped graph and the PyTorch fixtures.
/// Bad models are refused with the module's path and nothing is written.
module Fusion.Dsl.Tests.Onnx.OnnxExportTests

open System.Diagnostics
open System.IO
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.IO
open Fusion.Dsl.Conformance
open Fusion.Dsl.Layers
open Fusion.Dsl.Onnx
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport
open Fusion.Dsl.Zoo

let private node op name target (args: GraphArg list) = GraphNode(op, name, target, args)
let private r = GraphArg.Ref
let private c (v: obj) = GraphArg.Const v

/// torchvision's GoogLeNet BasicConv2d: conv (no bias), BatchNorm, then F.relu in its forward graph.
let private basicConv (inC: int) (outC: int) (k: int) (pad: int) (seed: int) : Module =
    let conv = Conv.Create(2, inC, outC, [| k |], padding = ConvPadding.Explicit(pad), bias = false, seed = seed)
    let rng = System.Random(seed)
    let vec lo hi = Fusion.Dsl.Tensors.Tensor.Generate((fun _ -> float32 (lo + (hi - lo) * rng.NextDouble())), outC)
    let bn = BatchNorm.Create(2, outC, eps = 1e-3, weight = vec 0.5 1.5, bias = vec -0.2 0.2, runningMean = vec -0.1 0.1, runningVar = vec 0.5 2.0)
    let graph =
        Graph [ node NodeOp.Placeholder "x" null []
                node NodeOp.CallModule "conv" "conv" [ r "x" ]
                node NodeOp.CallModule "bn" "bn" [ r "conv" ]
                GraphNode(NodeOp.CallFunction, "relu", "relu", [ r "bn" ], [ System.Collections.Generic.KeyValuePair("inplace", c true) ])
                node NodeOp.Output "output" null [ r "relu" ] ]
    UserModule.Create("BasicConv2d", ModuleChildren.Create([ NamedModule("conv", conv); NamedModule("bn", bn) ]), graph)

/// A GoogLeNet-shaped network: a stem, one Inception block (four branches concatenated on channels, one through a
/// max-pool), then adaptive average pooling, flatten, dropout and the classifier, with a scalar multiply and add between.
let googlenetShaped () : Module =
    let inception =
        let children : (string * Module) list =
            [ "branch1", basicConv 8 4 1 0 11
              "branch2", Sequential.Create(basicConv 8 4 1 0 12, basicConv 4 6 3 1 13)
              "branch3", Sequential.Create(basicConv 8 2 1 0 14, basicConv 2 4 3 1 15)
              "branch4", Sequential.Create(MaxPool2d.Create([| 3 |], [| 1 |], [| 1 |], ceilMode = true), basicConv 8 4 1 0 16) ]
        let graph =
            Graph [ node NodeOp.Placeholder "x" null []
                    node NodeOp.CallModule "branch1" "branch1" [ r "x" ]
                    node NodeOp.CallModule "branch2" "branch2" [ r "x" ]
                    node NodeOp.CallModule "branch3" "branch3" [ r "x" ]
                    node NodeOp.CallModule "branch4" "branch4" [ r "x" ]
                    node NodeOp.CallFunction "cat" "cat" [ GraphArg.List(r "branch1", r "branch2", r "branch3", r "branch4"); c 1L ]
                    node NodeOp.Output "output" null [ r "cat" ] ]
        UserModule.Create("Inception", ModuleChildren.Create(children |> List.map NamedModule), graph)
    let children : (string * Module) list =
        [ "conv1", basicConv 3 8 3 1 1
          "maxpool1", MaxPool2d.Create([| 3 |], [| 2 |], ceilMode = true)
          "inception3a", inception
          "dropout", Dropout.Create(0.2)
          "fc", Linear.Create(18, 10, seed = 5) ]
    let graph =
        Graph [ node NodeOp.Placeholder "x" null []
                node NodeOp.CallModule "conv1" "conv1" [ r "x" ]
                node NodeOp.CallModule "maxpool1" "maxpool1" [ r "conv1" ]
                node NodeOp.CallModule "inception3a" "inception3a" [ r "maxpool1" ]
                node NodeOp.CallMethod "mul" "mul" [ r "inception3a"; c 0.5 ]
                node NodeOp.CallFunction "add" "add" [ r "mul"; c 1L ]
                node NodeOp.CallFunction "adaptive_avg_pool2d" "adaptive_avg_pool2d" [ r "add"; GraphArg.List(c 1L, c 1L) ]
                node NodeOp.CallFunction "flatten" "flatten" [ r "adaptive_avg_pool2d"; c 1L ]
                node NodeOp.CallModule "dropout" "dropout" [ r "flatten" ]
                node NodeOp.CallModule "fc" "fc" [ r "dropout" ]
                node NodeOp.Output "output" null [ r "fc" ] ]
    UserModule.Create("GoogLeNet", ModuleChildren.Create(children |> List.map NamedModule), graph)

/// Exports, checks with ONNX's checker, and compares ONNX Runtime with the engine, for each (name, model, input).
let private verify (cases: (string * Module * Fusion.Dsl.Tensors.Tensor * OnnxExportOptions option) list) =
    requireChecker ()
    let dir, cleanup = tempDir ()
    use _ = cleanup
    let paths = [ for name, model, x, options in cases -> name, model, x, export dir name model x options ]
    checkModels [ for _, _, _, p in paths -> p ]
    for name, model, x, p in paths do expectOrtMatches name p model x

let private fuseDiscovered (m: Module) = Fuser.FuseModules(m, Fuser.FindFusableGroups m |> Seq.map (fun g -> g :> seq<string>))

/// The fixture cases whose unfused model the engine runs (PyTorch's forward ran too).
let private runnableFixtures () =
    [ for json in Support.fixtureCases () do
        let case = FixtureCase.Load json
        if not (isNull case.ReferenceOutput) then yield case ]

/// A BatchNorm (alone or in a fused group) or a dropout that a training-mode forward runs with batch statistics or at
/// random: the reason an export may be refused.
let rec private needsTrainingMode (m: Module) =
    match m with
    | :? BatchNorm as b -> b.Training || isNull b.RunningMean
    | :? Dropout as d -> d.Training && d.P > 0.0
    | _ -> m.Children |> Seq.exists (fun c -> needsTrainingMode c.Module)

[<Tests>]
let tests =
    testList "Onnx.Export" [
        testList "zoo" [
            for name in [ "resnet18"; "mobilenet_v2"; "resnet50" ] ->
                test $"{name}: unfused and fused exports pass ONNX's checker and ONNX Runtime gives the engine's output" {
                    let zoo = ModelZoo.Create(name, seed = 3, randomizeBatchNorm = true)
                    let fused = Fuser.FuseModules(zoo.Model, zoo.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
                    let x = randomInput 7 zoo.InputShape
                    verify [ name, zoo.Model, x, None; name + "-fused", fused, x, None ]
                }
        ]
        test "an eval-fused conv1+bn1+relu (ConvReLU2d holding the folded Conv) becomes one Conv under the group's key and one Relu" {
            let zoo = ModelZoo.Create("resnet18", seed = 3, randomizeBatchNorm = true)
            let fused = Fuser.FuseModules(zoo.Model, zoo.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
            let proto, _ = OnnxModel.Build(fused, zoo.InputShape, OnnxExportOptions.Default)
            let names = proto.Graph.Node |> Seq.map (fun n -> n.Name, n.OpType) |> Map.ofSeq
            Expect.equal (names.TryFind "layer1.0.conv1.0") (Some "Conv") "the fused conv1's Conv is named by its path"
            Expect.equal (names.TryFind "layer1.0.conv1.1") (Some "Relu") "its ReLU follows under its own path"
            let inits = proto.Graph.Node |> Seq.find (fun n -> n.Name = "layer1.0.conv1.0") |> fun n -> List.ofSeq n.Input
            Expect.equal inits.Tail [ "layer1.0.conv1.0.weight"; "layer1.0.conv1.0.bias" ] "the folded weight and bias are named by the fused model's state_dict keys"
            Expect.isFalse (proto.Graph.Node |> Seq.exists (fun n -> n.OpType = "BatchNormalization")) "no BatchNorm is left in a fully fused resnet18"
        }
        test "a model that is one layer names its initializers by its own state_dict keys (weight, not .weight)" {
            for m in [ Conv.Create(2, 3, 4, [| 3 |], seed = 1) :> Module
                       BatchNorm.Create(2, 3) :> Module ] do
                let proto, _ = OnnxModel.Build(m, [| 1; 3; 8; 8 |], OnnxExportOptions.Default)
                // The nodes' inputs name the initializers (their data is written beside the proto).
                let names = proto.Graph.Node |> Seq.collect _.Input |> Set.ofSeq
                for key in m.StateDict() |> Seq.map _.Key |> Seq.filter (fun k -> k <> "num_batches_tracked") do
                    Expect.contains names key $"{m.TypeName}'s {key} is an initializer under that key"
        }
        test "GoogLeNet-shaped graphs (Inception concatenation, pooling, scalars, flatten) export and run in ONNX Runtime, unfused and fused" {
            let model = googlenetShaped ()
            let fused = fuseDiscovered model
            let x = randomInput 3 [| 2; 3; 17; 17 |]
            verify [ "googlenet", model, x, None
                     "googlenet-fused", fused, x, None
                     "googlenet-dynamic", model, x, Some(OnnxExportOptions(DynamicBatch = true)) ]
        }
        test "an in-place ReLU in a forward graph overwrites its input for every later reader, in the export as in the engine" {
            // y = relu(x, inplace) then x + y: PyTorch (and the engine) add relu(x) to itself.
            let graph =
                Graph [ node NodeOp.Placeholder "x" null []
                        node NodeOp.CallModule "conv" "conv" [ r "x" ]
                        node NodeOp.CallModule "relu" "relu" [ r "conv" ]
                        node NodeOp.CallFunction "add" "add" [ r "conv"; r "relu" ]
                        node NodeOp.Output "output" null [ r "add" ] ]
            let children = ModuleChildren.Create([ NamedModule("conv", Conv.Create(2, 3, 4, [| 3 |], seed = 3)); NamedModule("relu", Activation.Create(ActivationKind.ReLU, inplace = true)) ])
            verify [ "inplace", UserModule.Create("InPlace", children, graph), randomInput 8 [| 1; 3; 6; 6 |], None ]
        }
        test "the operations torchvision's networks add (gelu, sigmoid, mean, chunk, split, permute, layer_norm, softmax, matmul, functional pooling, size arithmetic) export with the engine's meaning, at opsets 17 and 20" {
            let b = GraphBuilder()
            let x = b.Input()
            let c = b.Call("conv", x)
            let g = b.Function("sub", b.Function("gelu", c, "tanh"), b.Function("gelu", c))
            let s = b.Function("sigmoid", b.Function("div", g, 0.5))
            let scaled = b.Function("mul", s, b.Function("mean", s, [| 2; 3 |], true))
            let halves = b.Function("chunk", scaled, 2L, 1L)
            let summed = b.Function("add", b.Function("getitem", halves, 0L), b.Function("getitem", halves, 1L))
            // view(1, C // 1, 6, 6) with C read from the tensor's size, as a traced graph computes shapes.
            let channels = b.Function("floordiv", b.Method("size", summed, 1L), 1L)
            let viewed = b.Method("view", summed, 1L, channels, 6L, 6L)
            let normed = b.Function("permute", b.Function("layer_norm", b.Function("permute", viewed, [| 0; 2; 3; 1 |]), [| 4 |]), [| 0; 3; 1; 2 |])
            let attention = b.Function("softmax", b.Function("matmul", normed, b.Method("transpose", normed, 2L, 3L)), -1L)
            let pooled = b.Function("max_pool2d", b.Function("avg_pool2d", attention, [| 2 |], [| 1 |]), [| 2 |], [| 1 |], [| 1 |])
            let clipped = b.Function("hardtanh", b.Function("relu6", pooled), -0.5, 0.25)
            let parts = b.Function("split", clipped, [| 1; 3 |], 1L)
            let out = b.Function("cat", [| b.Function("getitem", parts, 1L) :> obj; b.Function("getitem", parts, 0L) |], 1L)
            let children = ModuleChildren.Create([ NamedModule("conv", Conv.Create(2, 3, 8, [| 3 |], padding = ConvPadding.Explicit(1), seed = 9)) ])
            let model = UserModule.Create("Ops", children, b.Output out)
            // Opset 17 writes GELU as its formula and ReduceMean's axes as an attribute; opset 20 has Gelu and axes as an input.
            verify [ "torchvision ops", model, randomInput 10 [| 1; 3; 6; 6 |], None ]
            // Debian's ONNX 1.12 checker knows opsets up to 17, so opset 20 is checked by ONNX Runtime alone.
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let x = randomInput 11 [| 1; 3; 6; 6 |]
            expectOrtMatches "opset 20" (export dir "ops20" model x (Some(OnnxExportOptions(Opset = 20)))) model x
        }
        test "the carried nn.LeakyReLU, nn.ELU, nn.GroupNorm (affine and not, per channel) and nn.InstanceNorm1d/2d/3d export as LeakyRelu, Elu and InstanceNormalization with the engine's meaning" {
            let carried (typeName: string) (args: (string * objnull) list) (state: (string * Fusion.Dsl.Tensors.Tensor) list) =
                OpaqueModule.Create(typeName, "torch.nn", [ for k, v in args -> System.Collections.Generic.KeyValuePair(k, v) ], "",
                    ModuleChildren.Empty, TensorDict.Create([| for n, t in state -> struct (n, t) |]), false) :> Module
            let affine (c: int) (seed: int) = [ "weight", randomInput seed [| c |]; "bias", randomInput (seed + 1) [| c |] ]
            let norm typeName (c: int) (extra: (string * objnull) list) (state: (string * Fusion.Dsl.Tensors.Tensor) list) =
                carried typeName ([ "eps", box 1e-5; "affine", box (not state.IsEmpty) ] @ extra) state
            let instance (rank: int) (state: (string * Fusion.Dsl.Tensors.Tensor) list) =
                norm $"InstanceNorm{rank}d" 6 [ "num_features", box 6L; "track_running_stats", box false ] state
            let group (groups: int) (state: (string * Fusion.Dsl.Tensors.Tensor) list) = norm "GroupNorm" 6 [ "num_groups", box (int64 groups); "num_channels", box 6L ] state
            let chain (modules: Module list) = Sequential.Create([| for m in modules -> m |]) :> Module
            let activations = [ carried "LeakyReLU" [ "negative_slope", box 0.2; "inplace", box false ] []; carried "ELU" [ "alpha", box 0.7; "inplace", box false ] [] ]
            verify [ "norms 2d", chain (activations @ [ group 3 (affine 6 20); group 2 []; group 6 (affine 6 22); instance 2 (affine 6 24); instance 2 [] ]), randomInput 12 [| 2; 6; 5; 4 |], None
                     "norms 1d", chain [ instance 1 (affine 6 26); group 3 [] ], randomInput 13 [| 2; 6; 7 |], None
                     "norms 3d", chain [ instance 3 []; group 2 (affine 6 28) ], randomInput 14 [| 2; 6; 3; 4; 5 |], Some(OnnxExportOptions(DynamicBatch = true)) ]
        }
        test "F.interpolate and the carried nn.Upsample, nn.UpsamplingNearest2d and nn.UpsamplingBilinear2d export as Resize with the engine's meaning (nearest and bilinear, by scale factor and by size, align_corners both ways, a recomputed scale factor), at opsets 14 and 17 and with a dynamic batch run at another batch size" {
            let b = GraphBuilder()
            let x = b.Input()
            let size (h: int64) (w: int64) = [| box h; box w |]
            // conv -> Upsample nearest x2 -> interpolate bilinear by size -> UpsamplingBilinear2d (align_corners) x2
            // -> UpsamplingNearest2d by size -> interpolate bilinear x1.5, align_corners -> interpolate bilinear x1.3
            // recomputed -> interpolate nearest x1.5.
            let y = b.Call("up1", b.Call("conv", x))
            let y = b.Call("up2", b.Function("interpolate", y, size 11L 13L, null, "bilinear", false))
            let y = b.Function("interpolate", b.Call("up3", y), null, 1.5, "bilinear", true)
            let y = b.Function("interpolate", b.Function("interpolate", y, null, 1.3, "bilinear", false, true), null, 1.5, "nearest")
            let children =
                [ NamedModule("conv", Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit(1), seed = 12))
                  NamedModule("up1", upsampling "Upsample" null (box 2.0) "nearest" null)
                  NamedModule("up2", upsampling "UpsamplingBilinear2d" null (box 2.0) "bilinear" (box true))
                  NamedModule("up3", upsampling "UpsamplingNearest2d" (box (size 29L 31L)) null "nearest" null) ]
            let model = UserModule.Create("Upsampling", ModuleChildren.Create children, b.Output y) :> Module
            let x = randomInput 15 [| 2; 3; 5; 6 |]
            verify [ "upsampling", model, x, None; "upsampling14", model, x, Some(OnnxExportOptions(Opset = 14, DynamicBatch = true)) ]
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let path = export dir "dynamic" model x (Some(OnnxExportOptions(DynamicBatch = true)))
            expectOrtMatches "batch 3" path model (randomInput 16 [| 3; 3; 5; 6 |])
        }
        test "nearest upsampling of a one-channel or 1x1-plane input keeps PyTorch's NHWC special cases in ONNX (an output of the input's size or twice it, reached by another scale factor)" {
            // PyTorch 1.13 runs such an input through its NHWC kernel, whose nearest_idx copies an unchanged size and
            // halves a doubled one whatever the scale factor: 1.25 on 2 rows gives rows 0, 1 (not 0, 0), 2.2 on 3 rows
            // gives 6 rows 0, 0, 1, 1, 2, 2 (not 0, 0, 0, 1, 1, 2).
            let up scale = Sequential.Create(upsampling "Upsample" null (box scale) "nearest" null) :> Module
            verify [ "one channel, 1.25 on 2 x 4", up 1.25, randomInput 17 [| 1; 1; 2; 4 |], None
                     "one channel, 2.2 on 3 x 3", up 2.2, randomInput 18 [| 2; 1; 3; 3 |], Some(OnnxExportOptions(DynamicBatch = true))
                     "1x1 planes, 1.5 and 2.5", Sequential.Create(upsampling "Upsample" null (box [| box 1.5; box 2.5 |]) "nearest" null), randomInput 19 [| 1; 4; 1; 1 |], None
                     "several channels keep the NCHW kernel's rows, 1.25 on 2 x 4", up 1.25, randomInput 20 [| 1; 3; 2; 4 |], None ]
        }
        test "a dynamic-batch export runs in ONNX Runtime on another batch size" {
            let zoo = ModelZoo.Create("mobilenet_v2", seed = 1, widthMult = 0.25, numClasses = 10)
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let path = export dir "m" zoo.Model (randomInput 1 [| 1; 3; 64; 64 |]) (Some(OnnxExportOptions(DynamicBatch = true)))
            let x = randomInput 2 [| 3; 3; 64; 64 |]
            expectOrtMatches "batch 3" path zoo.Model x
        }
        test "every PyTorch fixture model the engine runs exports and runs in ONNX Runtime, unfused and fused, or is refused for its training mode" {
            requireChecker ()
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let mutable exported = []
            for case in runnableFixtures () do
                let candidates =
                    [ yield case.Name, case.Model
                      match case.FusedModel, case.FusedOutput with
                      | null, _ | _, null -> ()
                      | fused, _ -> yield case.Name + "-fused", fused ]
                for name, model in candidates do
                    try
                        let path = export dir name model case.Input None
                        exported <- (name, model, path) :: exported
                    with :? OnnxExportException as e ->
                        Expect.isTrue (needsTrainingMode model) $"{name} was refused though nothing in it needs training mode: {e.Message}"
                        Expect.isFalse (File.Exists(Path.Combine(dir, name + ".onnx"))) $"{name}: nothing is written on refusal"
            Expect.isGreaterThan exported.Length 40 "most fixture models export"
            checkModels [ for _, _, p in exported -> p ]
            for case in runnableFixtures () do
                for name, model, path in exported do
                    if name = case.Name || name = case.Name + "-fused" then expectOrtMatches name path model case.Input
        }
        // Alone: a timing shares the machine with no sibling test.
        testSequenced <| test "exporting resnet50 takes well under a second" {
            let zoo = ModelZoo.Create("resnet50")
            let fused = Fuser.FuseModules(zoo.Model, zoo.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
            let dir, cleanup = tempDir ()
            use _ = cleanup
            OnnxModel.Write(zoo.Model, zoo.InputShape, Path.Combine(dir, "warm.onnx"))
            let sw = Stopwatch.StartNew()
            OnnxModel.Write(fused, zoo.InputShape, Path.Combine(dir, "r50.onnx"))
            sw.Stop()
            Expect.isLessThan sw.Elapsed.TotalSeconds 1.0 $"export took {sw.Elapsed.TotalMilliseconds} ms"
        }
        testList "refusals" [
            let expectRefused (model: Module) (path: string) (fragment: string) =
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let file = Path.Combine(dir, "m.onnx")
                File.WriteAllText(file, "previous")
                let e = Support.throwsOf<OnnxExportException> (fun () -> OnnxModel.Write(model, [| 1; 3; 8; 8 |], file))
                Expect.equal e.ModulePath path "names the module"
                Expect.stringContains e.Message fragment "says why"
                Expect.equal (File.ReadAllText file) "previous" "the existing file is untouched"
                Expect.equal (Directory.GetFiles dir).Length 1 "no temporary file is left"
            test "a module with a forward hook is refused by path" {
                let conv = Conv.Create(2, 3, 4, [| 3 |]).AddHook(Fusion.Dsl.Tests.TestModels.fwdHook "probe")
                expectRefused (Sequential.Create(conv)) "0" "hooks (probe)"
            }
            test "a BatchNorm in training mode is refused by path" {
                expectRefused (Sequential.Create(Conv.Create(2, 3, 4, [| 3 |]), BatchNorm.Create(2, 4, training = true))) "1" "training mode"
            }
            test "a QAT-fused ConvBn in training mode is refused by path" {
                let model = Sequential.Create(Conv.Create(2, 3, 4, [| 3 |]), BatchNorm.Create(2, 4), Activation.Create(ActivationKind.ReLU)).Train(true)
                let fused = Fuser.FuseModulesQat(model, [ "0"; "1"; "2" ])
                expectRefused fused "0" "batch statistics"
            }
            test "a model that does not fit the input shape is refused by path" {
                expectRefused (Sequential.Create(Conv.Create(2, 5, 4, [| 3 |]))) "0" "5 channels"
            }
            test "reflect padding wider than the input is refused by path" {
                expectRefused (Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], padding = ConvPadding.Explicit(8), paddingMode = PaddingMode.Reflect))) "0" "does not fit"
            }
            test "uneven adaptive pooling is refused by path" {
                expectRefused (Sequential.Create(AdaptiveAvgPool2d.Create([| 3 |]))) "0" "windows of different sizes"
            }
            test "an upsampling by a scale factor whose output size float32 computes differently is refused by path" {
                // PyTorch's floor(30 · 2.1) in float64 is 63, ONNX's Resize computes floor(30 · 2.1f) = 62 in float32.
                let up = upsampling "Upsample" null (box 2.1) "nearest" null
                let dir, cleanup = tempDir ()
                use _ = cleanup
                let file = Path.Combine(dir, "m.onnx")
                let e = Support.throwsOf<OnnxExportException> (fun () -> OnnxModel.Write(Sequential.Create(up), [| 1; 3; 4; 30 |], file))
                Expect.equal e.ModulePath "0" "names the module"
                Expect.stringContains e.Message "62" "says what ONNX would compute"
                Expect.stringContains e.Message "give interpolate a size instead" "and what to do"
                Expect.isFalse (File.Exists file) "nothing is written"
            }
        ]
        test "a ConvBnReLU2d kept whole in eval mode exports as one Conv with the BatchNorm folded and one Relu" {
            let cbr = FusedModule.Create("ConvBnReLU2d", Conv.Create(2, 3, 4, [| 3 |], seed = 8), Fusion.Dsl.Tests.TestModels.bn 2 4 9 false, Activation.Create(ActivationKind.ReLU))
            let model = Sequential.Create(cbr)
            let proto, _ = OnnxModel.Build(model, [| 1; 3; 8; 8 |], OnnxExportOptions.Default)
            Expect.sequenceEqual [ for n in proto.Graph.Node -> n.OpType, n.Name ] [ "Conv", "0.0"; "Relu", "0.2" ] "one Conv and one Relu, named by path"
            verify [ "convbnrelu", model, randomInput 9 [| 2; 3; 8; 8 |], None ]
        }
        test "padding modes and convolution kinds export with their meaning (reflect, replicate, circular, same, transposed with output padding, 1-d, 3-d)" {
            let x2 = randomInput 4 [| 2; 3; 9; 9 |]
            let conv pm pad = Conv.Create(2, 3, 4, [| 3 |], padding = pad, paddingMode = pm, seed = 2) :> Module
            verify [
                "reflect", conv PaddingMode.Reflect (ConvPadding.Explicit 1), x2, None
                "replicate", conv PaddingMode.Replicate (ConvPadding.Explicit 2), x2, None
                "same", Conv.Create(2, 3, 4, [| 4 |], padding = ConvPadding.Same, dilation = [| 2 |], seed = 2) :> Module, x2, None
                "transposed", Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], stride = [| 2 |], transposed = true, outputPadding = [| 1 |], padding = ConvPadding.Explicit 1, groups = 1, seed = 3), Activation.Create(ActivationKind.Hardswish), AvgPool2d.Create([| 3 |], [| 2 |], [| 1 |], ceilMode = false, countIncludePad = false)), x2, None
                "transposed-output-padding-past-padding", Conv.Create(2, 3, 4, [| 3 |], stride = [| 2 |], transposed = true, outputPadding = [| 1 |], seed = 3) :> Module, x2, None
                "conv1d", Sequential.Create(Conv.Create(1, 3, 6, [| 3 |], groups = 3, seed = 4), BatchNorm.Create(1, 6), Activation.Create(ActivationKind.SiLU), Flatten.Create(), Linear.Create(42, 5)), randomInput 5 [| 2; 3; 9 |], None
                "conv3d", Sequential.Create(Conv.Create(3, 3, 4, [| 3 |], padding = ConvPadding.Explicit 1, seed = 5), Activation.Create(ActivationKind.Hardsigmoid), Activation.Create(ActivationKind.ReLU6)), randomInput 6 [| 1; 3; 4; 5; 6 |], None
                "unbatched", Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], seed = 6), MaxPool2d.Create([| 2 |]), Flatten.Create(0), Linear.Create(36, 3)), randomInput 7 [| 3; 8; 8 |], None
                "circular", conv PaddingMode.Circular (ConvPadding.Explicit 1), x2, None
                "circular-uneven", conv PaddingMode.Circular (ConvPadding.Explicit [| 2; 1 |]), x2, None ]
        }
    ]
