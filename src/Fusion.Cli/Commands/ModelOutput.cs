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
