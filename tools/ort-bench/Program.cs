// ONNX Runtime's CPU forward time for an ONNX export of a zoo network, measured as `fusion bench` measures its own:
// warm-up, then the median of N runs. Usage (Release):
//   dotnet run -c Release --project tools/ort-bench -- MODEL.onnx [--threads 2] [--runs 7] [--batch 1]
// Export the networks first: /usr/bin/python3 tools/bench/export_onnx.py --out DIR (a dynamic batch axis, so --batch N
// feeds N images to the same file; a file with a fixed batch runs only at that batch).
// Prints one JSON object: {"engine", "model", "forward_ms" (per batch), "threads", "runs", "batch", "images_per_s"}.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

if (args.Length == 0 || args[0].StartsWith("--", StringComparison.Ordinal))
{
    Console.Error.WriteLine("usage: ort-bench MODEL.onnx [--threads N] [--runs N] [--batch N]");
    return 2;
}
var path = args[0];
int Option(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}
var threads = Option("--threads", 2);
var runs = Math.Max(5, Option("--runs", 7));
var batch = Option("--batch", 1);
// The bound of `fusion bench --batch`, for the same reason: past it the activations alone take gigabytes.
const int maxBatch = 64;
if (batch is < 1 or > maxBatch)
{
    Console.Error.WriteLine($"ort-bench: --batch takes an integer from 1 to {maxBatch}, got {batch}");
    return 2;
}

// ONNX Runtime's defaults for a latency benchmark: every graph optimisation, a fixed intra-op pool, no inter-op pool.
using var options = new SessionOptions
{
    GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    IntraOpNumThreads = threads,
    InterOpNumThreads = 1,
    ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
};
using var session = new InferenceSession(path, options);
var input = session.InputMetadata.First();
var dims = input.Value.Dimensions;
if (dims.Length == 0 || (dims[0] >= 0 && dims[0] != batch))
{
    Console.Error.WriteLine($"ort-bench: {path} takes a fixed batch of {(dims.Length == 0 ? "none" : dims[0])}, not {batch}: " +
                            "export it with a dynamic batch axis (tools/bench/export_onnx.py does)");
    return 2;
}
var shape = dims.Select((d, i) => i == 0 ? batch : d < 0 ? 1 : d).ToArray();
var data = new float[shape.Aggregate(1, (a, b) => a * b)];
var rng = new Random(1);
for (var i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
var tensor = new DenseTensor<float>(data, shape);
var feeds = new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor(input.Key, tensor) };

void Once()
{
    using var results = session.Run(feeds);
}

for (var i = 0; i < 2; i++) Once();
var times = new double[runs];
for (var i = 0; i < runs; i++)
{
    var sw = Stopwatch.StartNew();
    Once();
    times[i] = sw.Elapsed.TotalMilliseconds;
}
Array.Sort(times);
var median = runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
{
    ["engine"] = "onnxruntime " + typeof(InferenceSession).Assembly.GetName().Version,
    ["model"] = Path.GetFileNameWithoutExtension(path),
    ["forward_ms"] = Math.Round(median, 3),
    ["threads"] = threads,
    ["runs"] = runs,
    ["batch"] = batch,
    ["images_per_s"] = Math.Round(batch * 1000.0 / median, 2),
}));
return 0;
