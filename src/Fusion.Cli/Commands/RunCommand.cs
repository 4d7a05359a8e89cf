using System.CommandLine;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Quantization;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion run MODEL --input x.npy --out y.npy</c>: runs a model (fused or not) in the engine on a user's input and
/// writes the output, both as NumPy float32 arrays, so any tool can compare it with PyTorch's or ONNX Runtime's. A model
/// with a <c>.quantization.json</c> beside it (written by <c>fusion quantize</c>) runs as the int8 model. With
/// <c>--quantized-state-dict q.pt</c> (PyTorch's <c>torch.save(qmodel.state_dict())</c> of the model converted from this
/// float model), the float model is converted here and takes the file's int8 weights, scales and zero points, as
/// <c>qmodel.load_state_dict(torch.load(q.pt))</c> does in PyTorch: a PyTorch user runs PyTorch's int8 model without
/// recalibrating.
/// </summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var input = new Option<string>("--input") { Description = "the input: a float32 .npy file (numpy.save), e.g. of shape N,C,H,W", Required = true };
        var output = new Option<string>("--out") { Description = "where to write the output as a float32 .npy file", Required = true };
        var threads = new Option<int>("--threads") { Description = "threads for the forward pass (default: every core)" };
        var qstate = new Option<string?>("--quantized-state-dict") { Description = "run the int8 model PyTorch converted from this float model: its torch.save(qmodel.state_dict()) .pt file (every module with a qconfig, as get_default_qconfig puts one on every module)" };
        threads.Validators.Add(Validate.Positive);
        output.Validators.Add(Validate.FileName);
        var c = model.AddTo(new Command("run", "run a model in the engine on an .npy input and write the output as .npy"));
        foreach (var o in new Option[] { input, output, threads, qstate }) c.Options.Add(o);
        c.SetAction(r =>
        {
            var inPath = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            var src = model.Load(r);
            // Before the forward pass: the output must not replace anything this command reads.
            var qfile = r.GetValue(qstate);
            OutputFile.RefuseInputs([outPath], [inPath, .. src.InputFiles, .. qfile is null ? Array.Empty<string>() : [qfile]]);
            var x = Npy.Read(inPath);
            int? cores = r.GetResult(threads) is null ? null : r.GetValue(threads);
            if (qfile is not null)
                return RunInt8(QuantizedFromTorch(src, qfile), $"the int8 model of {src.Label} with {qfile}", x, outPath, cores);
            if (r.GetValue(model.File) is { } file && File.Exists(QuantizedModelFile.QuantizationPathFor(file)))
            {
                var (quantized, qconfig) = QuantizedModelFile.Read(file);
                return RunInt8(quantized, $"the int8 model {file} (qconfig {qconfig})", x, outPath, cores);
            }
            var options = r.GetResult(threads) is null ? null : new ForwardOptions { Threads = r.GetValue(threads) };
            var y = Forward.Run(src.Model, x, options);
            Npy.Write(outPath, y);
            Console.Out.WriteLine($"wrote {outPath}: output {Tensor.ShapeString(y.Shape)} of {src.Label} on input {Tensor.ShapeString(x.Shape)}");
            return 0;
        });
        return c;
    }

    /// <summary>The float model converted as PyTorch's <c>convert</c> would with a qconfig on every module, holding the
    /// file's parameters (the template's own do not matter: it is not calibrated, and the x86 qconfig only decides which
    /// modules are quantized, which every default qconfig decides alike).</summary>
    /// <exception cref="ModelFormatException">The file cannot be read or does not fit the converted model (naming the key).</exception>
    private static QuantizedModel QuantizedFromTorch(ModelSource src, string file)
    {
        ObservedModel observed;
        try { observed = EagerQuantization.Prepare(src.Model, QConfigMapping.ForAll(QConfig.GetDefault("x86"))); }
        catch (ArgumentException e) { throw new ModelFormatException(src.Label, null, $"cannot be converted as PyTorch's eager flow would: {e.Message}", e); }
        var template = EagerQuantization.Convert(observed, observed.InitialState);
        // PyTorch 1.13 keeps a quantized Hardswish's or ELU's scale and zero point outside the state_dict: this template,
        // never calibrated, has none to give it.
        if (template.Layers.Values.FirstOrDefault(l => QuantizedStateDict.QParamsOutsideStateDict.Contains(l.TypeName)) is { } h)
            throw new ModelFormatException(file, null, $"cannot restore the quantized {h.TypeName["Quantized".Length..]} at '{h.Path}': PyTorch 1.13 keeps its scale and zero point outside its state_dict; quantize the float model here (fusion quantize) instead");
        return QuantizedStateDict.Load(template, file);
    }

    /// <summary>The int8 model's forward (its output dequantized, as PyTorch's after its DeQuantStub).</summary>
    private static int RunInt8(QuantizedModel quantized, string label, Tensor x, string outPath, int? threads)
    {
        Tensor y;
        try { y = quantized.Forward(x, threads); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"fusion: forward failed: {e.Message}");
            return 1;
        }
        Npy.Write(outPath, y);
        Console.Out.WriteLine($"wrote {outPath}: output {Tensor.ShapeString(y.Shape)} of {label} on input {Tensor.ShapeString(x.Shape)}");
        return 0;
    }
}
