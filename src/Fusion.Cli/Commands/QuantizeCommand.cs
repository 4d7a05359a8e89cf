using System.CommandLine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Onnx;
using Fusion.Dsl.Quantization;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion quantize MODEL --qconfig x86 --calibration DATA --out OUT</c>: PyTorch's eager post-training quantization
/// (prepare with <c>get_default_qconfig(NAME)</c> on every module, calibration on the data in the engine, convert) of a
/// fused or unfused model with QuantStub/DeQuantStub, written as the float model in the model format plus its
/// <c>.quantization.json</c> (see <see cref="QuantizedModelFile"/>); for an <c>.onnx</c> path, as ONNX in QDQ form
/// (see <see cref="QuantizedOnnx"/>) with a symbolic batch; when OUT ends in <c>.pt</c>, as PyTorch's quantized <c>state_dict</c> (see
/// <see cref="QuantizedStateDict"/>), which <c>load_state_dict(strict=True)</c> takes into the model PyTorch's own
/// prepare/convert builds. Bad input is refused in one line naming the file or module, and nothing is written.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var qconfig = new Option<string>("--qconfig") { Description = "the qconfig: " + string.Join(", ", QConfig.BackendNames) + " (PyTorch's get_default_qconfig)", Required = true };
        var calibration = new Option<string>("--calibration") { Description = "calibration data: a float32 .npy file of shape N,C,H,W (one batch), or a folder of them (one batch each, in name order)", Required = true };
        var output = new Option<string>("--out") { Description = "the int8 model: X.json (writes X.json, X.safetensors, X.quantization.json), a directory, X.onnx (ONNX QDQ form with a symbolic batch, which ONNX Runtime runs as int8) or X.pt (PyTorch's quantized state_dict, for load_state_dict(strict=True) into PyTorch's converted model)", Required = true };
        var threads = new Option<int>("--threads") { Description = "threads for the calibration passes (default: every core)" };
        threads.Validators.Add(Validate.Positive);
        output.Validators.Add(Validate.FileName);
        var c = model.AddTo(new Command("quantize", "post-training int8 quantization as PyTorch's eager prepare/calibrate/convert: qconfig by name, calibration on .npy batches"));
        foreach (var o in new Option[] { qconfig, calibration, output, threads }) c.Options.Add(o);
        c.SetAction(r =>
        {
            try
            {
                var name = r.GetValue(qconfig)!;
                var qc = QConfig.GetDefault(name);
                var src = model.Load(r);
                var files = CalibrationFiles(r.GetValue(calibration)!);
                var outPath = r.GetValue(output)!;
                var onnx = outPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);
                var torch = outPath.EndsWith(".pt", StringComparison.OrdinalIgnoreCase);
                var json = ModelFile.JsonPathFor(outPath);
                OutputFile.RefuseInputs(onnx || torch ? [outPath] : [json, ModelFile.TensorPathFor(json), QuantizedModelFile.QuantizationPathFor(json)], [.. files, .. src.InputFiles]);
                var batches = files.Select(f => Batch(f, src)).ToList();
                var observed = EagerQuantization.Prepare(src.Model, QConfigMapping.ForAll(qc));
                var state = EagerQuantization.Calibrate(observed, batches, r.GetResult(threads) is null ? null : r.GetValue(threads));
                var quantized = EagerQuantization.Convert(observed, state);
                var summary = $"{quantized.Layers.Count} quantized layers of {src.Label} (qconfig {name}), calibrated on {batches.Count} batch(es) of {batches.Sum(b => b.Size(0))} sample(s)";
                if (onnx)
                {
                    // The model's recorded input shape, else the first batch's; a layer without a QDQ form is refused by path.
                    // The batch is symbolic: the calibration batches' size says nothing about the batch the int8 model serves.
                    int[] shape = src.InputShape.IsEmpty ? [.. batches[0].Shape] : [.. src.InputShape];
                    QuantizedOnnx.Write(quantized, shape, outPath, new OnnxExportOptions { DynamicBatch = true });
                    Console.Out.WriteLine($"wrote {outPath}: ONNX QDQ form (opset {OnnxExportOptions.DefaultOpset}, input [batch, {string.Join(", ", shape[1..])}]) of {summary}");
                    return 0;
                }
                if (torch)
                {
                    QuantizedStateDict.Save(quantized, outPath);
                    Console.Out.WriteLine($"wrote {outPath} (PyTorch's quantized state_dict): {summary}");
                    return 0;
                }
                var written = QuantizedModelFile.Write(outPath, quantized, name, src.InputShape.IsEmpty ? null : [.. src.InputShape]);
                Console.Out.WriteLine($"wrote {json} and {written}: {summary}");
                return 0;
            }
            catch (ArgumentException e)
            {
                // One line: the message without .NET's "(Parameter 'x')" suffix, which names our code, not the user's input.
                var message = e.ParamName is { } p ? e.Message.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : e.Message;
                Console.Error.WriteLine($"fusion: {message}");
                return 1;
            }
        });
        return c;
    }

    /// <summary>The calibration files: the file itself, or a folder's <c>.npy</c> files in ordinal name order.</summary>
    private static List<string> CalibrationFiles(string path)
    {
        if (Directory.Exists(path))
        {
            var files = Directory.GetFiles(path, "*.npy").Order(StringComparer.Ordinal).ToList();
            if (files.Count == 0) throw new ArgumentException($"calibration folder {path} holds no .npy file: the calibration set is empty");
            return files;
        }
        if (!File.Exists(path)) throw new ArgumentException($"calibration data {path} does not exist: give a float32 .npy file or a folder of them");
        return [path];
    }

    /// <summary>One calibration batch, refused when it is empty, holds NaN or an infinity, or does not fit the model's
    /// recorded input shape (the message names the file).</summary>
    private static Tensor Batch(string file, ModelSource src)
    {
        var x = Npy.Read(file);
        if (x.Rank == 0 || x.Count == 0)
            throw new ArgumentException($"calibration file {file} is empty (shape {Tensor.ShapeString(x.Shape)}): the calibration set needs samples");
        if (!src.InputShape.IsEmpty && (x.Rank != src.InputShape.Length || !x.Shape[1..].SequenceEqual(src.InputShape.AsSpan()[1..])))
            throw new ArgumentException($"calibration file {file} has shape {Tensor.ShapeString(x.Shape)}, but the model takes [N, {string.Join(", ", src.InputShape.Skip(1))}]; give samples of the model's input shape");
        var v = x.Float32;
        for (int i = 0; i < v.Length; i++)
            if (!float.IsFinite(v[i]))
                throw new ArgumentException($"calibration file {file} holds {v[i]} at element {i}: calibration data must be finite (remove or replace the NaN/Inf samples)");
        return x;
    }
}
