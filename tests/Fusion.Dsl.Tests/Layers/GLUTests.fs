/// nn.GLU, the worked example of docs/adding-a-layer.md: its descriptor defines it by table operations, which the ONNX
/// exporter writes; the engine runs a kernel registered beside it that gives the definition's bits; and what PyTorch refuses (an odd halved axis, an axis outside the input) is refused by both with PyTorch's
/// words and the module's path. PyTorch's own values are checked by the round-trip case "gated" (Interop).
module Fusion.Dsl.Tests.Layers.GLUTests

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Onnx
open Fusion.Dsl.Reference
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport

/// The engine's GLU against the naive reference's definition within the kernel tolerance.
let private agrees (dim: int) (shape: int[]) =
    let x = randomInput (shape.Length * 31 + dim) shape
    let expected = NaiveReference.Glu(x, dim)
    let actual = Forward.Run(GLU.Create dim, x)
    Expect.sequenceEqual actual.Dimensions expected.Dimensions $"dim {dim} on %A{shape}: shape"
    let bound = Support.Tol.kernelAbs + Support.Tol.kernelRel * expected.MaxAbs()
    Expect.isLessThanOrEqual (actual.MaxAbsDiff expected) bound $"dim {dim} on %A{shape}: values"

[<Tests>]
let tests =
    testList "Layers.GLU" [
        test "the engine computes the definition along every axis, negative dims counting from the end" {
            for dim, shape in [ -1, [| 2; 6 |]; 1, [| 2; 8; 3; 3 |]; 0, [| 4; 5 |]; -3, [| 2; 4; 3; 2 |]; 2, [| 1; 3; 2 |] ] do
                agrees dim shape
        }
        test "the kernel gives the definition's bits, on one thread and two, across pieces of a long run" {
            let kind = LayerKinds.Find "GLU"
            Expect.isNotNull (LayerForwards.Of kind) "GLU has a registered kernel"
            for dim, shape in [ 1, [| 2; 8; 5; 5 |]; -1, [| 3; 40_000 |]; 0, [| 2; 33_000 |] ] do
                let m = GLU.Create dim
                let x = randomInput 5 shape
                let definition = Forward.Run(kind.Define m, x, ForwardOptions(Threads = 1))
                for threads in [ 1; 2 ] do
                    let kernel = Forward.Run(m, x, ForwardOptions(Threads = threads))
                    Expect.sequenceEqual kernel.Dimensions definition.Dimensions $"dim {dim} on %A{shape}: shape"
                    Expect.equal (kernel.MaxAbsDiff definition) 0.0 $"dim {dim} on %A{shape}, {threads} thread(s): the same bits"
        }
        test "its definition calls only table operations, reads none of the module's tensors and is built afresh from the module" {
            let kind = LayerKinds.Find "GLU"
            Expect.isTrue kind.IsDefinedByOperations "GLU is defined by operations"
            let defined = kind.Define(GLU.Create 1)
            Expect.equal defined.TypeName "GLU" "the container keeps the kind's name (errors name it)"
            for node in defined.Forward.Nodes do
                if node.Op = NodeOp.CallFunction || node.Op = NodeOp.CallMethod then
                    Expect.isNotNull (GraphOps.Of node) $"node {node.Name} ({node.Target}) is in the table"
                Expect.notEqual node.Op NodeOp.GetAttr $"node {node.Name} reads no tensor (GLU has none)"
            let chunk = defined.Forward.Nodes |> Seq.find (fun n -> n.Target = "chunk")
            Expect.equal (string chunk.Args[2]) (string (GraphArg.Const 1L)) "the module's dim is the chunk's"
        }
        test "an odd halved axis and an axis outside the input are refused by the engine with PyTorch's message and the module's path" {
            let model = Sequential.Create(Linear.Create(4, 5, true, seed = 1), GLU.Create())
            let odd = Support.throwsOf<ForwardException> (fun () -> Forward.Run(model, randomInput 1 [| 2; 4 |]) |> ignore)
            Expect.stringContains odd.Message "Halving dimension must be even, but dimension 1 is size 5" "PyTorch's words"
            Expect.equal odd.ModulePath "1" "the GLU's path"
            let outside = Support.throwsOf<ForwardException> (fun () -> Forward.Run(GLU.Create 2, randomInput 1 [| 2; 4 |]) |> ignore)
            Expect.stringContains outside.Message "Dimension out of range (expected to be in range of [-2, 1], but got 2)" "PyTorch's words"
            let scalar = Support.throwsOf<ForwardException> (fun () -> Forward.Run(GLU.Create(), Fusion.Dsl.Tensors.Tensor.FromFloat32(ReadOnlySpan [| 1f |])) |> ignore)
            Expect.stringContains scalar.Message "glu does not support scalars" "PyTorch's words"
        }
        test "ONNX export writes the definition's operators, which ONNX Runtime computes as the engine does, and refuses an odd axis by path" {
            let dir, cleanup = tempDir ()
            use _ = cleanup
            let model = Sequential.Create(GLU.Create 1, GLU.Create -1)
            let x = randomInput 3 [| 2; 8; 3; 4 |]
            let path = export dir "glu" model x None
            expectOrtMatches "GLU(1) then GLU(-1)" path model x
            let odd = Support.throwsOf<OnnxExportException> (fun () -> OnnxModel.Write(model, [| 2; 6; 3; 3 |], IO.Path.Combine(dir, "odd.onnx")))
            Expect.stringContains odd.Message "1" "names the module's path"
            Expect.stringContains odd.Message "Halving dimension must be even, but dimension 3 is size 3" "PyTorch's words"
            Expect.isFalse (IO.File.Exists(IO.Path.Combine(dir, "odd.onnx"))) "nothing is written"
        }
    ]
