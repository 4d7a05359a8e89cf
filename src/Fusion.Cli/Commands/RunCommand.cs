using System.CommandLine;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion run MODEL --input x.npy --out y.npy</c>: runs a model (fused or not) in the engine on a user's input and
/// writes the output, both as NumPy float32 arrays, so any tool can compare it with PyTorch's or ONNX Runtime's.
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
            var options = r.GetResult(threads) is null ? null : new ForwardOptions { Threads = r.GetValue(threads) };
            var y = Forward.Run(src.Model, x, options);
            Npy.Write(outPath, y);
            Console.Out.WriteLine($"wrote {outPath}: output {Tensor.ShapeString(y.Shape)} of {src.Label} on input {Tensor.ShapeString(x.Shape)}");
            return 0;
        });
        return c;
    }
}
