// ONNX Runtime on pairs of ONNX files: the original torch.onnx.export and the fused file written back into it, on the
// same input (a float32 .npy). One line per pair: ORIGINAL <tab> max|fused - original| <tab> max|original|.
//   dotnet fsi tools/breadth/ort_compare.fsx ORIGINAL FUSED INPUT.npy [ORIGINAL FUSED INPUT.npy ...]
// run.py calls it once for the whole table (python3 here has no onnxruntime; the NuGet package is the same ONNX Runtime
// the test suite uses).
#r "nuget: Microsoft.ML.OnnxRuntime, 1.31.1"
open System
open System.IO
open Microsoft.ML.OnnxRuntime
open Microsoft.ML.OnnxRuntime.Tensors

/// A little-endian float32 C-order .npy (what numpy.save writes for run.py's input): shape and data.
let readNpy (path: string) =
    let bytes = File.ReadAllBytes path
    let headerLength = int (BitConverter.ToUInt16(bytes, 8))
    let header = Text.Encoding.ASCII.GetString(bytes, 10, headerLength)
    if not (header.Contains "'<f4'") || header.Contains "'fortran_order': True" then failwithf "%s: not a C-order float32 .npy" path
    let shapeText = header.Substring(header.IndexOf "(" + 1, header.IndexOf ")" - header.IndexOf "(" - 1)
    let shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries) |> Array.map int
    let data = Array.zeroCreate<float32> (Array.fold (*) 1 shape)
    Buffer.BlockCopy(bytes, 10 + headerLength, data, 0, data.Length * 4)
    shape, data

let run (path: string) (shape: int[]) (x: float32[]) =
    use options = new SessionOptions(GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 1)
    use session = new InferenceSession(path, options)
    let name = session.InputMetadata.Keys |> Seq.head
    let input = DenseTensor<float32>(Memory<float32>(Array.copy x), ReadOnlySpan<int>(shape))
    use results = session.Run [ NamedOnnxValue.CreateFromTensor(name, input) ]
    (results |> Seq.head).AsEnumerable<float32>() |> Array.ofSeq

let args = fsi.CommandLineArgs |> Array.skip 1
for i in 0 .. 3 .. args.Length - 3 do
    let original, fused, input = args[i], args[i + 1], args[i + 2]
    try
        let shape, x = readNpy input
        let a = run original shape x
        let b = run fused shape x
        let diff = if a.Length <> b.Length then infinity else Array.fold2 (fun m (p: float32) q -> max m (float (abs (p - q)))) 0.0 a b
        printfn "%s\t%g\t%g" original diff (a |> Array.fold (fun m v -> max m (float (abs v))) 0.0)
    with e -> printfn "%s\tERROR\t%s" original (e.Message.Split('\n')[0])
