/// Carrying what the importer does not model, and writing a fused model back into its source file: operators without a
/// module or graph operation here are kept as opaque `onnx::Op` calls (fusion works around them, the engine refuses them
/// by name), and `OnnxModel.Write(source, fused, path)` changes only what fusion changed, so any valid file fuses and
/// ONNX Runtime computes the same on the written file as on the original.
module Fusion.Dsl.Tests.Onnx.OnnxWriteBackTests

open System.IO
open Expecto
open Google.Protobuf
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Onnx
open Fusion.Dsl.Onnx.Proto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport

let private floats (name: string) (dims: int64 list) (values: float32 list) =
    let t = TensorProto(Name = name, DataType = 1)
    t.Dims.AddRange dims
    t.FloatData.AddRange values
    t

let private floatAttr (name: string) (v: float32) =
    AttributeProto(Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v)

/// x → Conv(3→3, 1x1, bias) → BatchNormalization → Relu → Erf → LeakyRelu(alpha 0.3) → y (or, without the tail,
/// x → Erf → Conv → BatchNormalization → n), with BatchNorm statistics far
/// from the identity so that folding changes the weights: Erf and LeakyRelu have no module here and are carried.
let private convBnReluThenCarried (tail: bool) =
    let w = floats "conv.weight" [ 3L; 3L; 1L; 1L ] [ 0.5f; -0.2f; 0.1f; 0.3f; 0.8f; -0.4f; -0.6f; 0.2f; 0.9f ]
    let b = floats "conv.bias" [ 3L ] [ 0.1f; -0.1f; 0.05f ]
    let bn =
        [ floats "bn.weight" [ 3L ] [ 1.5f; 0.7f; 1.1f ]; floats "bn.bias" [ 3L ] [ 0.2f; -0.3f; 0.1f ]
          floats "bn.running_mean" [ 3L ] [ 0.05f; -0.1f; 0.2f ]; floats "bn.running_var" [ 3L ] [ 0.5f; 2.0f; 1.3f ] ]
    // Without the tail, the Erf comes first and the BatchNormalization writes the graph's output.
    let conv = onnxNode "Conv" "/conv/Conv" [ (if tail then "x" else "e"); "conv.weight"; "conv.bias" ] [ "c" ]
    let norm = onnxNode "BatchNormalization" "/bn/BatchNormalization" [ "c"; "bn.weight"; "bn.bias"; "bn.running_mean"; "bn.running_var" ] [ "n" ]
    let relu = onnxNode "Relu" "/relu/Relu" [ "n" ] [ "r" ]
    let erf = onnxNode "Erf" "/Erf" [ (if tail then "r" else "x") ] [ "e" ]
    let leaky = onnxNode "LeakyRelu" "/act/LeakyRelu" [ "e" ] [ "y" ]
    leaky.Attribute.Add(floatAttr "alpha" 0.3f)
    let nodes = if tail then [ conv; norm; relu; erf; leaky ] else [ erf; conv; norm ]
    let output = if tail then "y" else "n"
    handMade 17L nodes (w :: b :: bn) output

let private save (dir: string) (name: string) (model: ModelProto) =
    let path = Path.Combine(dir, name)
    File.WriteAllBytes(path, model.ToByteArray())
    path

let private fuseDiscovered (m: Module) =
    let groups = Fuser.FindFusableGroups m
    groups, Fuser.FuseModules(m, groups |> Seq.map (fun g -> g :> seq<string>))

/// Saves the hand-made model in `dir`, imports it, fuses every discovered group and writes it back; the source and
/// written paths.
let private fuseAndWriteBack (dir: string) (tail: bool) (options: OnnxExportOptions option) =
    let source = save dir "m.onnx" (convBnReluThenCarried tail)
    let imported = OnnxModel.Load source
    let _, fused = fuseDiscovered imported.Model
    let written = Path.Combine(dir, "fused.onnx")
    OnnxModel.Write(imported, fused, written, Option.toObj options)
    source, written

let private nodesOf (path: string) = (ModelProto.Parser.ParseFrom(File.ReadAllBytes path)).Graph.Node |> List.ofSeq

let private expectOrtEqual (what: string) (original: string) (written: string) (x: Fusion.Dsl.Tensors.Tensor) =
    let expected = ortRun original x
    let actual = ortRun written x
    Expect.sequenceEqual (actual.Shape.ToArray()) (expected.Shape.ToArray()) $"{what}: output shape"
    let tol = OrtTol.abs + OrtTol.rel * expected.MaxAbs()
    Expect.isLessThanOrEqual (actual.MaxAbsDiff expected) tol $"{what}: ONNX Runtime on the written file against the original"

[<Tests>]
let tests =
    testList "Onnx.WriteBack" [
        test "operators without a module are carried as onnx::Op calls, and the engine refuses one by node and operator" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let imported = OnnxModel.Load(save dir "m.onnx" (convBnReluThenCarried true))
            Expect.sequenceEqual imported.CarriedOperators [ "Erf"; "LeakyRelu" ] "the carried operators, sorted"
            let graph = (imported.Model :?> Fusion.Dsl.Layers.UserModule).Forward |> nonNull
            let targets = graph.Nodes |> Seq.choose (fun n -> n.Target |> Option.ofObj) |> Set.ofSeq
            Expect.isTrue (targets.Contains "onnx::Erf" && targets.Contains "onnx::LeakyRelu") $"opaque calls in the graph: {targets}"
            let e = Support.throwsOf<Fusion.Dsl.Engine.ForwardException> (fun () -> Fusion.Dsl.Engine.Forward.Run(imported.Model, randomInput 1 [| 1; 3; 4; 4 |]) |> ignore)
            Expect.isTrue e.Unsupported "refused as an operation the engine does not evaluate, not as bad input"
            Expect.stringContains e.Message "onnx::Erf" "names the operator"
        }
        test "a fused model written back into its file loses only the BatchNormalization; carried nodes come back with their attributes; ONNX Runtime agrees" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source = save dir "m.onnx" (convBnReluThenCarried true)
            let imported = OnnxModel.Load source
            let groups, fused = fuseDiscovered imported.Model
            Expect.sequenceEqual (groups |> Seq.map List.ofSeq |> List.ofSeq) [ [ "conv"; "bn"; "relu" ] ] "Conv+BN+ReLU found around the carried nodes"
            let written = Path.Combine(dir, "fused.onnx")
            OnnxModel.Write(imported, fused, written)
            let ops = nodesOf written |> List.map (fun n -> n.OpType)
            Expect.sequenceEqual ops [ "Conv"; "Relu"; "Erf"; "LeakyRelu" ] "the BatchNormalization is gone, every other node stays in order"
            let leaky = nodesOf written |> List.find (fun n -> n.OpType = "LeakyRelu")
            Expect.equal leaky.Attribute.[0].F 0.3f "the carried node's attribute is the file's"
            let initializers = (ModelProto.Parser.ParseFrom(File.ReadAllBytes written)).Graph.Initializer |> Seq.map (fun t -> t.Name) |> Set.ofSeq
            Expect.equal initializers (set [ "conv.weight"; "conv.bias" ]) "the folded weights under the file's names; the BatchNorm's tensors are gone"
            expectOrtEqual "Conv+BN+ReLU, Erf, LeakyRelu" source written (randomInput 4 [| 1; 3; 4; 4 |])
        }
        test "a BatchNormalization that was the graph's output is removed and the output keeps its name" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source, written = fuseAndWriteBack dir false None
            let model = ModelProto.Parser.ParseFrom(File.ReadAllBytes written)
            Expect.sequenceEqual (model.Graph.Node |> Seq.map (fun n -> n.OpType)) [ "Erf"; "Conv" ] "Erf then the folded Conv"
            Expect.equal model.Graph.Output.[0].Name "n" "the output's name is the file's"
            Expect.equal (model.Graph.Node |> Seq.last).Output.[0] "n" "the Conv now writes the output"
            expectOrtEqual "Erf, Conv+BN" source written (randomInput 5 [| 1; 3; 4; 4 |])
        }
        test "a symbolic batch can be asked for, and ONNX Runtime then runs batch 3" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source, written = fuseAndWriteBack dir true (Some(OnnxExportOptions(DynamicBatch = true)))
            let x = randomInput 6 [| 3; 3; 4; 4 |]
            let y = ortRun written x
            Expect.sequenceEqual (y.Shape.ToArray()) [| 3; 3; 4; 4 |] "batch 3 runs"
            // Each image of the batch is the original file's output on that image.
            for i in 0 .. 2 do
                let xi = Fusion.Dsl.Tensors.Tensor.FromFloat32(System.ReadOnlySpan<float32>(x.ToArray().[i * 48 .. i * 48 + 47]), [| 1; 3; 4; 4 |])
                let expected = ortRun source xi
                let actual = Fusion.Dsl.Tensors.Tensor.FromFloat32(System.ReadOnlySpan<float32>(y.ToArray().[i * 48 .. i * 48 + 47]), [| 1; 3; 4; 4 |])
                Expect.isLessThanOrEqual (actual.MaxAbsDiff expected) (OrtTol.abs + OrtTol.rel * expected.MaxAbs()) $"image {i}"
        }
        test "with ExternalData the weights go to NAME.onnx.data beside the file (as past 2 GiB), and ONNX Runtime and the importer read them" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let source, written = fuseAndWriteBack dir true (Some(OnnxExportOptions(ExternalData = true)))
            Expect.isTrue (File.Exists(written + ".data")) "the data file beside the model"
            let model = ModelProto.Parser.ParseFrom(File.ReadAllBytes written)
            for t in model.Graph.Initializer do
                Expect.equal t.DataLocation TensorProto.Types.DataLocation.External $"{t.Name} is external"
                Expect.isTrue t.RawData.IsEmpty $"{t.Name} holds no bytes in the model"
            expectOrtEqual "external data" source written (randomInput 8 [| 1; 3; 4; 4 |])
            Expect.sequenceEqual (OnnxModel.Load written).CarriedOperators [ "Erf"; "LeakyRelu" ] "reads back"
            // A fresh export too.
            let zoo = Fusion.Dsl.Zoo.ModelZoo.Create("mobilenet_v2", seed = 2, widthMult = 0.35, numClasses = 10, randomizeBatchNorm = true)
            let x = randomInput 9 [| 1; 3; 32; 32 |]
            let fresh = export dir "fresh" zoo.Model x (Some(OnnxExportOptions(ExternalData = true)))
            Expect.isTrue (File.Exists(fresh + ".data")) "the fresh export's data file"
            expectOrtMatches "fresh export with external data" fresh zoo.Model x
        }
        test "a model whose graph is not the file's is refused, and nothing is written" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let imported = OnnxModel.Load(save dir "m.onnx" (convBnReluThenCarried true))
            let other = OnnxModel.Read(save dir "other.onnx" (convBnReluThenCarried false))
            let written = Path.Combine(dir, "fused.onnx")
            let e = Support.throwsOf<OnnxExportException> (fun () -> OnnxModel.Write(imported, other, written))
            Expect.stringContains e.Message "not the one read from the ONNX file" "says why"
            Expect.isFalse (File.Exists written) "nothing written"
        }
        test "a module replaced by another kind of layer is refused naming its path" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let imported = OnnxModel.Load(save dir "m.onnx" (convBnReluThenCarried true))
            let changed = ModulePath.Replace(imported.Model, "conv", Fusion.Dsl.Layers.Linear.Create(3, 3))
            let written = Path.Combine(dir, "fused.onnx")
            let e = Support.throwsOf<OnnxExportException> (fun () -> OnnxModel.Write(imported, changed, written))
            Expect.stringContains e.Message "conv" "names the module"
            Expect.stringContains e.Message "Conv2d" "names what the file has"
            Expect.isFalse (File.Exists written) "nothing written"
        }
    ]
