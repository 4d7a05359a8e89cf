using System.CommandLine;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Quantization;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion run MODEL --input x.npy --out y.npy</c>: runs a model (fused or not) in the engine on a user's input and
/// writes the output, both as NumPy float32 arrays, so any tool can compare it with PyTorch's or ONNX Runtime's. A model
/// with a <c>.quantization.json</c> beside it (written by <c>fusion quantize</c>) runs as the int8 model.
/// </summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var input = new Option<string>("--input") { Description = "the input: a float32 .npy file (numpy.save), e.g. of shape N,C,H,W", Required = true };
        var output = new Option<string>("--out") { Description = "where to write the output as a float32 .npy file", Required = true };
        var threads = new Option<int>("--threads") { Description = "threads for the forward pass (default: every core)" };
        threads.Validators.Add(Validate.Positive);
        output.Validators.Add(Validate.FileName);
        var c = model.AddTo(new Command("run", "run a model in the engine on an .npy input and write the output as .npy"));
        foreach (var o in new Option[] { input, output, threads }) c.Options.Add(o);
        c.SetAction(r =>
        {
            var inPath = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            var src = model.Load(r);
            // Before the forward pass: the output must not replace anything this command reads.
            OutputFile.RefuseInputs([outPath], [inPath, .. src.InputFiles]);
            var x = Npy.Read(inPath);
            if (r.GetValue(model.File) is { } file && File.Exists(QuantizedModelFile.QuantizationPathFor(file)))
                return RunInt8(file, x, outPath, r.GetResult(threads) is null ? null : r.GetValue(threads));
            var options = r.GetResult(threads) is null ? null : new ForwardOptions { Threads = r.GetValue(threads) };
            var y = Forward.Run(src.Model, x, options);
            Npy.Write(outPath, y);
            Console.Out.WriteLine($"wrote {outPath}: output {Tensor.ShapeString(y.Shape)} of {src.Label} on input {Tensor.ShapeString(x.Shape)}");
            return 0;
        });
        return c;
    }

    /// <summary>The int8 model's forward (its output dequantized, as PyTorch's after its DeQuantStub).</summary>
    private static int RunInt8(string file, Tensor x, string outPath, int? threads)
    {
        var (quantized, qconfig) = QuantizedModelFile.Read(file);
        Tensor y;
        try { y = quantized.Forward(x, threads); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"fusion: forward failed: {e.Message}");
            return 1;
        }
        Npy.Write(outPath, y);
        Console.Out.WriteLine($"wrote {outPath}: output {Tensor.ShapeString(y.Shape)} of the int8 model {file} (qconfig {qconfig}) on input {Tensor.ShapeString(x.Shape)}");
        return 0;
    }
}
