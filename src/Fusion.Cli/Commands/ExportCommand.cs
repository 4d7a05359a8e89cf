using System.CommandLine;
using Fusion.Dsl.Onnx;

namespace Fusion.Cli.Commands;

/// <summary><c>fusion export MODEL --onnx out.onnx</c>: writes a model (fused or not) as ONNX for ONNX Runtime and other consumers.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var onnx = new Option<string>("--onnx") { Description = "the ONNX file to write", Required = true };
        var dynamicBatch = new Option<bool>("--dynamic-batch") { Description = "make the input's first dimension symbolic, so any batch size runs" };
        var opset = new Option<int>("--opset")
        {
            Description = $"the ONNX opset to write ({OnnxExportOptions.MinOpset} to {OnnxExportOptions.MaxOpset})",
            DefaultValueFactory = _ => OnnxExportOptions.DefaultOpset,
        };
        onnx.Validators.Add(Validate.FileName);
        var c = model.AddTo(new Command("export", "write the model as ONNX with the engine's inference semantics (initializers by state_dict key, nodes by module path)"));
        foreach (var o in new Option[] { onnx, dynamicBatch, opset }) c.Options.Add(o);
        c.SetAction(r =>
        {
            var path = r.GetValue(onnx)!;
            var version = r.GetValue(opset);
            if (version is < OnnxExportOptions.MinOpset or > OnnxExportOptions.MaxOpset)
                throw new UsageException($"--opset takes {OnnxExportOptions.MinOpset} to {OnnxExportOptions.MaxOpset}, got {version}");
            var src = model.Load(r);
            if (src.InputShape.IsEmpty) throw new UsageException("the model file holds no input shape: give --input-shape, e.g. 1,3,224,224");
            ModelOutput.RefuseUnsafeTargets(path, oneFile: true, src);
            OnnxModel.Write(src.Model, [.. src.InputShape], path, new OnnxExportOptions { DynamicBatch = r.GetValue(dynamicBatch), Opset = version });
            Console.Out.WriteLine($"wrote {path} (ONNX opset {version}, input [{string.Join(", ", src.InputShape)}]{(r.GetValue(dynamicBatch) ? ", dynamic batch" : "")})");
            return 0;
        });
        return c;
    }
}
