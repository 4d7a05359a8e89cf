using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Onnx;

namespace Fusion.Cli.Commands;

/// <summary>Writes a model where <c>--out</c> says: <c>FILE.onnx</c> as ONNX (for the model's input shape), anything else
/// in the <c>fusion-model/1</c> format.</summary>
internal static class ModelOutput
{
    /// <summary>Whether <paramref name="path"/> names an ONNX file.</summary>
    public static bool IsOnnx(string path) => path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The one check every command makes before it fuses or writes anything: the files that writing
    /// <paramref name="path"/> produces (one file for ONNX or when <paramref name="oneFile"/>, else the JSON and
    /// safetensors pair) must be writable targets and, links followed, none of the files the command read.
    /// </summary>
    /// <param name="path">The output the user named.</param>
    /// <param name="oneFile">Whether exactly <paramref name="path"/> is written (ONNX export, a <c>.pt</c> state_dict).</param>
    /// <param name="src">The model read, with its files.</param>
    /// <param name="otherInputs">Further files the command read (a groups file), or nulls.</param>
    /// <exception cref="ModelFormatException">A target is an input, or a directory, device or pipe.</exception>
    public static void RefuseUnsafeTargets(string path, bool oneFile, ModelSource src, params string?[] otherInputs)
    {
        string[] targets;
        if (oneFile || IsOnnx(path)) targets = [path];
        else
        {
            var json = ModelFile.JsonPathFor(path);
            targets = [ModelFile.TensorPathFor(json), json];
        }
        OutputFile.RefuseInputs(targets, [.. src.InputFiles, .. otherInputs]);
    }

    /// <summary>Writes <paramref name="model"/> and says what was written; an ONNX file read with a symbolic batch is written
    /// with one again.</summary>
    /// <exception cref="UsageException">An ONNX file is asked for but no input shape is known.</exception>
    public static void Write(string path, Module model, ModelSource src, string description)
    {
        var dynamicBatch = src.DynamicBatch;
        if (IsOnnx(path))
        {
            if (src.InputShape.IsEmpty) throw new UsageException($"writing {path} needs the input shape: give --input-shape, e.g. 1,3,224,224");
            OnnxModel.Write(model, [.. src.InputShape], path, new OnnxExportOptions { DynamicBatch = dynamicBatch });
            Console.Out.WriteLine($"wrote {path} (ONNX opset {OnnxExportOptions.DefaultOpset}, input [{string.Join(", ", src.InputShape)}]{(dynamicBatch ? ", dynamic batch" : "")})");
            return;
        }
        var written = ModelFile.Write(path, model, src.InputShape.IsEmpty ? null : src.InputShape, description);
        Console.Out.WriteLine($"wrote {written} and {ModelFile.TensorPathFor(written)}");
    }
}
