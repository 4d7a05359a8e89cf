using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Quantization;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion bench MODEL --quantized</c>: times an int8 model written by <c>fusion quantize</c> (its forward on quantized
/// tensors, the int8 kernels doing the convolutions and linear layers) beside the float forward of the same (fused) float
/// model in an <see cref="EngineSession"/>, medians after warm-up on the same probe input. <c>--json</c> prints one object
/// with <c>forward_int8_ms</c>, <c>forward_float_ms</c>, <c>int8_speedup</c> (float ÷ int8), <c>batch</c>,
/// <c>images_per_s</c> (int8), <c>threads</c>, <c>runs</c>, <c>quantized_layers</c>, <c>max_abs_diff</c> (int8 output
/// against float, for orientation: quantization error, not a defect), <c>isa</c> and <c>runtime</c>.
/// </summary>
internal static class BenchQuantized
{
    /// <summary>Measures the int8 model at <paramref name="path"/> and prints the report; returns the exit code.</summary>
    /// <param name="path">A model file with its <c>.quantization.json</c> beside it.</param>
    /// <param name="inputShape">The input shape for one image, or null for the file's own.</param>
    /// <param name="batch">Images per forward pass.</param>
    /// <param name="threads">Cores of both forwards.</param>
    /// <param name="runs">Timed runs per measurement.</param>
    /// <param name="json">Print one JSON object instead of text.</param>
    public static int Run(string path, string? inputShape, int batch, int threads, int runs, bool json)
    {
        if (!File.Exists(QuantizedModelFile.QuantizationPathFor(path)))
            throw new UsageException($"bench --quantized takes a model written by fusion quantize; {QuantizedModelFile.QuantizationPathFor(path)} does not exist");
        var subject = BenchCommand.FileSubject(path, inputShape, batch);
        var (model, qconfig) = QuantizedModelFile.Read(path);
        var x = subject.Input;
        if (!json) Console.Error.WriteLine($"int8 forward of {subject.Name} (qconfig {qconfig}), {runs} runs after warm-up...");
        Tensor int8Output = null!;
        var int8Ms = Timing.MedianMs(() => int8Output = model.Forward(x, threads), runs, warmup: 2);
        if (!json) Console.Error.WriteLine($"float forward, {runs} runs after warm-up...");
        using var session = EngineSession.Open(model.FloatModel, new EngineSessionOptions { Threads = threads });
        Tensor floatOutput = null!;
        var floatMs = Timing.MedianMs(() => floatOutput = session.Run(x), runs, warmup: 3);
        var diff = int8Output.MaxAbsDiff(floatOutput);
        double ImagesPerS(double ms) => batch * 1000.0 / ms;
        var ci = CultureInfo.InvariantCulture;
        if (json)
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = subject.Name, ["qconfig"] = qconfig, ["forward_int8_ms"] = Math.Round(int8Ms, 3),
                ["forward_float_ms"] = Math.Round(floatMs, 3), ["int8_speedup"] = Math.Round(floatMs / int8Ms, 3),
                ["batch"] = batch, ["images_per_s"] = Math.Round(ImagesPerS(int8Ms), 2), ["threads"] = threads, ["runs"] = runs,
                ["quantized_layers"] = model.Layers.Count, ["max_abs_diff"] = diff, ["isa"] = InstructionSets.Float,
                ["int8_path"] = InstructionSets.Int8, ["runtime"] = RuntimeInformation.FrameworkDescription,
            }));
        else
        {
            Console.Out.WriteLine(string.Create(ci, $"{subject.Name}: int8 (qconfig {qconfig}, {model.Layers.Count} quantized layers), {threads} threads, batch {batch}, medians of {runs} runs, {InstructionSets.Int8} int8 kernels"));
            Console.Out.WriteLine(string.Create(ci, $"  forward int8    {int8Ms,10:F2} ms"));
            Console.Out.WriteLine(string.Create(ci, $"  forward float   {floatMs,10:F2} ms  (int8 speed-up {floatMs / int8Ms:F2}x, max |int8 - float| {diff:G3})"));
        }
        return 0;
    }
}
