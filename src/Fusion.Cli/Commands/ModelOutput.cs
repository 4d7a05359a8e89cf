using System.CommandLine;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Onnx;

using Fusion.Dsl.Rules;

namespace Fusion.Cli.Commands;

/// <summary>Writes a model where <c>--out</c> says, by its extension: <c>FILE.onnx</c> as ONNX (for the model's input
/// shape), <c>FILE.pt</c>/<c>FILE.pth</c> as the state_dict <c>torch.save</c> writes, <c>FILE.safetensors</c> as a
/// safetensors state_dict, anything else (<c>FILE.json</c>, a directory) in the <c>fusion-model/1</c> format.</summary>
internal static class ModelOutput
{
    /// <summary>Whether <paramref name="path"/> names an ONNX file.</summary>
    public static bool IsOnnx(string path) => path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="path"/> names a <c>torch.save</c> state_dict.</summary>
    public static bool IsCheckpoint(string path)
        => path.EndsWith(".pt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".pth", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="path"/> names a safetensors state_dict.</summary>
    public static bool IsSafeTensors(string path) => path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether writing <paramref name="path"/> writes exactly that one file (not the model format's pair).</summary>
    public static bool IsOneFile(string path) => IsOnnx(path) || IsCheckpoint(path) || IsSafeTensors(path);

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
        if (oneFile || IsOneFile(path)) targets = [path];
        else
        {
            var json = ModelFile.JsonPathFor(path);
            targets = [ModelFile.TensorPathFor(json), json];
        }
        OutputFile.RefuseInputs(targets, [.. src.InputFiles, .. otherInputs]);
    }

    /// <summary>Writes <paramref name="model"/>'s state_dict as <c>torch.save</c> does, whatever the path's extension
    /// (<c>fuse --format pt</c>), and says how to load it.</summary>
    public static void WriteCheckpoint(string path, Module model)
    {
        TorchCheckpoint.Write(path, model.StateDict());
        Console.Out.WriteLine($"wrote {path} (load it with model.load_state_dict(torch.load(path)))");
        NoteFusionsPyTorchLacks(model);
    }

    /// <summary>A state_dict of a model holding this project's own fused kinds (extended rules) has their layout, which no
    /// PyTorch model has: say so, naming the first few, rather than let the load instruction stand alone.</summary>
    private static void NoteFusionsPyTorchLacks(Module model)
    {
        var own = model.NamedModules().Where(kv => kv.Value.Namespace == Namespaces.FusionDsl).ToList();
        if (own.Count == 0) return;
        var named = string.Join(", ", own.Take(3).Select(kv => $"{kv.Value.TypeName} at '{kv.Key}'"));
        Console.Out.WriteLine($"note: the model holds {own.Count} fusion(s) PyTorch has no module for ({named}{(own.Count > 3 ? ", ..." : "")}); their state_dict keys (PATH.0.weight) load only into a model fused the same way here, not into a PyTorch model");
    }

    /// <summary>The <c>--dynamic-batch</c> option of a command that may write ONNX.</summary>
    public static Option<bool> DynamicBatchOption() => new("--dynamic-batch") { Description = "when writing ONNX, make the input's first dimension symbolic, so any batch size runs" };

    /// <summary>The <c>--rules</c> option of a command that fuses: PyTorch's patterns, or this project's extended set.</summary>
    public static Option<string> RulesOption()
    {
        var o = new Option<string>("--rules") { Description = "default (PyTorch's patterns) or extended (plus this project's)", DefaultValueFactory = _ => "default" };
        o.AcceptOnlyFromAmong("default", "extended");
        return o;
    }

    /// <summary>The rule set a <see cref="RulesOption"/> value names.</summary>
    public static RuleSet Rules(string name) => name == "extended" ? RuleSet.Extended : RuleSet.Default;

    /// <summary>Writes <paramref name="model"/> and says what was written; an ONNX file read with a symbolic batch, or
    /// asked for with <paramref name="dynamicBatch"/>, is written with a symbolic batch.</summary>
    /// <exception cref="UsageException">An ONNX file is asked for but no input shape is known.</exception>
    public static void Write(string path, Module model, ModelSource src, string description, bool dynamicBatch = false)
    {
        if (IsCheckpoint(path))
        {
            WriteCheckpoint(path, model);
            return;
        }
        if (IsSafeTensors(path))
        {
            SafeTensors.Write(path, model.StateDict());
            Console.Out.WriteLine($"wrote {path} (load it with model.load_state_dict(fusion_torch.load_state_dict(path)))");
            NoteFusionsPyTorchLacks(model);
            return;
        }
        dynamicBatch |= src.DynamicBatch;
        if (IsOnnx(path) && src.Onnx is { } source && !GraphChanged(src.Model, model))
        {
            OnnxModel.Write(source, model, path, new OnnxExportOptions { DynamicBatch = dynamicBatch });
            Console.Out.WriteLine($"wrote {path} (the graph of {src.Label} with the fused modules' changes{(dynamicBatch ? ", dynamic batch" : "")})");
            return;
        }
        if (IsOnnx(path))
        {
            if (src.InputShape.IsEmpty) throw new UsageException($"writing {path} needs the input shape: give --input-shape, e.g. 1,3,224,224");
            // The write-back keeps the file's graph; graph rules (fusion auto --rules extended) rewrote it.
            if (src.Onnx is not null)
                Console.Out.WriteLine($"note: graph rules changed the forward graph of {src.Label}, so {path} is exported afresh from the fused model instead of written back into the file's graph");
            OnnxModel.Write(model, [.. src.InputShape], path, new OnnxExportOptions { DynamicBatch = dynamicBatch });
            Console.Out.WriteLine($"wrote {path} (ONNX opset {OnnxExportOptions.DefaultOpset}, input [{string.Join(", ", src.InputShape)}]{(dynamicBatch ? ", dynamic batch" : "")})");
            return;
        }
        var written = ModelFile.Write(path, model, src.InputShape.IsEmpty ? null : src.InputShape, description);
        Console.Out.WriteLine($"wrote {written} and {ModelFile.TensorPathFor(written)}");
    }

    /// <summary>Whether <paramref name="fused"/>'s root graph differs from <paramref name="original"/>'s (graph rules ran).</summary>
    private static bool GraphChanged(Fusion.Dsl.Algebra.Module original, Fusion.Dsl.Algebra.Module fused)
        => original is Fusion.Dsl.Layers.UserModule { Forward: { } before } && fused is Fusion.Dsl.Layers.UserModule { Forward: { } after } && !before.Equals(after);
}
