/// ONNX consumers for the export tests: ONNX Runtime (the NuGet package) runs an exported file, and ONNX's own checker
/// (Debian's python3-onnx under /usr/bin/python3) validates it; helpers to export into a temporary folder, and to build
/// hand-made files for the import's refusals.
module Fusion.Dsl.Tests.Onnx.OnnxSupport

open System
open System.Diagnostics
open System.IO
open Expecto
open Microsoft.ML.OnnxRuntime
open Microsoft.ML.OnnxRuntime.Tensors
open Google.Protobuf
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Onnx
open Fusion.Dsl.Onnx.Proto
open Fusion.Dsl.Tests

/// Runs /usr/bin/python3 with a script and arguments; returns the exit code and what it printed.
let runPython (script: string) (args: string list) = Support.runPython ("-c" :: script :: args)

/// Skips (outside CI) or fails (under CI) unless ONNX's checker (python3-onnx) can run.
let requireChecker () = Support.requireTool "python3-onnx (ONNX's checker)" (Support.pythonHas [ "onnx" ])

/// Skips (outside CI) or fails (under CI) unless torch and torchvision can run.
let requireTorch () = Support.requireTool "python3-torch and python3-torchvision" (Support.pythonHas [ "torch"; "torchvision" ])

/// ONNX's checker with full_check (shape inference included) on several files in one Python start; fails with what it said.
let checkModels (paths: string list) =
    let script =
        "import sys, onnx\n" +
        "for p in sys.argv[1:]:\n" +
        "    onnx.checker.check_model(onnx.load(p), full_check=True)\n"
    let rc, output = runPython script paths
    if rc <> 0 then failtestf "ONNX's checker refused %A:\n%s" paths output

/// A fresh temporary folder, removed by the returned disposable.
let tempDir () =
    let d = Path.Combine(Path.GetTempPath(), "fusion-onnx-" + Guid.NewGuid().ToString("N"))
    Directory.CreateDirectory d |> ignore
    d, { new IDisposable with member _.Dispose() = try Directory.Delete(d, true) with _ -> () }

/// Runs an ONNX file in ONNX Runtime (every graph optimisation, one thread) on one float32 input.
let ortRun (path: string) (x: Fusion.Dsl.Tensors.Tensor) : Fusion.Dsl.Tensors.Tensor =
    use options = new SessionOptions(GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1)
    use session = new InferenceSession(path, options)
    let name = session.InputMetadata.Keys |> Seq.head
    let input = DenseTensor<float32>(Memory<float32>(x.ToArray()), ReadOnlySpan<int>(x.Shape.ToArray()))
    use results = session.Run [ NamedOnnxValue.CreateFromTensor(name, input) ]
    let output = (results |> Seq.head).AsTensor<float32>()
    let dims = output.Dimensions.ToArray()
    let data: float32[] = Seq.toArray output
    Fusion.Dsl.Tensors.Tensor.FromFloat32(ReadOnlySpan<float32>(data), dims)

/// Tolerances of ONNX Runtime against the engine on the same file's model.
module OrtTol =
    /// Two float32 implementations of the same network (MLAS's convolutions and GEMMs against the engine's, which use
    /// Winograd for 3x3 and other summation orders), relative to the output magnitude: float32 reordering over ~50 layers
    /// stays near 1e-5; a wrong operator, attribute or weight is off by 1e-2 or more.
    let rel = 1e-4
    /// Absolute floor for outputs near zero.
    let abs = 1e-5

/// ONNX Runtime's output on the exported file equals the engine's forward within OrtTol.
let expectOrtMatches (what: string) (path: string) (model: Module) (x: Fusion.Dsl.Tensors.Tensor) =
    let expected = Fusion.Dsl.Engine.Forward.Run(model, x)
    let actual = ortRun path x
    Expect.sequenceEqual (actual.Shape.ToArray()) (expected.Shape.ToArray()) $"{what}: ONNX Runtime's output shape"
    let tol = OrtTol.abs + OrtTol.rel * expected.MaxAbs()
    let err = actual.MaxAbsDiff expected
    Expect.isLessThanOrEqual err tol $"{what}: max |ONNX Runtime - engine| = {err} exceeds {tol}"

/// Exports a model for the input's shape into `dir` under `name`.onnx and returns the path.
let export (dir: string) (name: string) (model: Module) (x: Fusion.Dsl.Tensors.Tensor) (options: OnnxExportOptions option) =
    let path = Path.Combine(dir, name + ".onnx")
    OnnxModel.Write(model, x.Shape.ToArray(), path, Option.toObj options)
    path

/// An nn.Upsample, nn.UpsamplingNearest2d or nn.UpsamplingBilinear2d as the model format carries it: an opaque torch.nn
/// module holding its F.interpolate arguments (null for Python's None).
let upsampling (typeName: string) (size: objnull) (scale: objnull) (mode: string) (align: objnull) : Module =
    let args =
        [ Collections.Generic.KeyValuePair("size", size); Collections.Generic.KeyValuePair("scale_factor", scale)
          Collections.Generic.KeyValuePair("mode", box mode); Collections.Generic.KeyValuePair("align_corners", align)
          Collections.Generic.KeyValuePair("recompute_scale_factor", null) ]
    Fusion.Dsl.Layers.OpaqueModule.Create(typeName, "torch.nn", args)

/// A deterministic input of the given shape, uniform in [-1, 1).
let randomInput (seed: int) (shape: int[]) =
    let r = Random(seed)
    Fusion.Dsl.Tensors.Tensor.Generate((fun _ -> float32 (r.NextDouble() * 2.0 - 1.0)), shape)

// ---- hand-made files (the generated protobuf classes) for refusals -----------------------------------------------------

/// A float32 graph input or output of a fixed shape.
let valueInfo (name: string) (shape: int list) =
    let t = TypeProto.Types.Tensor(ElemType = 1, Shape = TensorShapeProto())
    for d in shape do t.Shape.Dim.Add(TensorShapeProto.Types.Dimension(DimValue = int64 d))
    ValueInfoProto(Name = name, Type = TypeProto(TensorType = t))

/// A node of the default domain.
let onnxNode (op: string) (name: string) (inputs: string list) (outputs: string list) =
    let n = NodeProto(OpType = op, Name = name)
    n.Input.AddRange inputs
    n.Output.AddRange outputs
    n

/// A one-input model of the given nodes and initializers at an opset.
let handMade (opset: int64) (nodes: NodeProto list) (initializers: TensorProto list) (output: string) =
    let g = GraphProto(Name = "hand")
    g.Node.AddRange nodes
    g.Initializer.AddRange initializers
    g.Input.Add(valueInfo "x" [ 1; 3; 4; 4 ])
    g.Output.Add(valueInfo output [ 1; 3; 4; 4 ])
    let m = ModelProto(IrVersion = 8L, Graph = g)
    m.OpsetImport.Add(OperatorSetIdProto(Domain = "", Version = opset))
    m

/// Writes `model` as bad.onnx in `dir`: the import must refuse it naming `key` and saying `fragment`.
let expectImportRefused (dir: string) (model: ModelProto) (key: string | null) (fragment: string) =
    let path = Path.Combine(dir, "bad.onnx")
    File.WriteAllBytes(path, model.ToByteArray())
    let e = Support.throwsOf<ModelFormatException> (fun () -> OnnxModel.Read path |> ignore)
    Expect.equal e.Key key "names the node or tensor"
    Expect.stringContains e.Problem fragment "says what is wrong"
