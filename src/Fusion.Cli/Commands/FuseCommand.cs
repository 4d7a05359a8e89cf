using System.Text.Json.Nodes;
using Fusion.Dsl;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion fuse</c>: fuses the given groups as <c>fuse_modules</c> (or <c>fuse_modules_qat</c> with <c>--qat</c>) does,
/// prints a verification on a probe input, and optionally writes the fused model in the fixture format.
/// </summary>
internal static class FuseCommand
{
    public static int Run(string[] args)
    {
        var a = CliArgs.Parse(args, [.. ModelSource.Options, "groups", "groups-file", "out"], ["qat"]);
        var src = ModelSource.From(a);
        var groups = GroupsFrom(a, src);
        var qat = a.Flag("qat");
        Fusion.Dsl.Algebra.Module fused;
        try { fused = Fuser.FuseModulesRaw(src.Model, groups, qat); }
        catch (FusionException e)
        {
            Console.Error.WriteLine($"fusion refused ({e.Kind}): {e.Message}");
            return 1;
        }
        Console.Out.WriteLine($"fused {Fuser.ParseModulesToFuse(groups).Count} group(s) of {src.Label} with {(qat ? "fuse_modules_qat" : "fuse_modules")}");
        if (src.ProbeInput is { } x)
        {
            var before = Forward.Run(src.Model, x);
            var after = Forward.Run(fused, x);
            var diff = after.MaxAbsDiff(before);
            Console.Out.WriteLine($"verification on a probe input {Fusion.Dsl.Tensors.Tensor.ShapeString(x.Shape)}: max |fused - unfused| = {diff:G4} (output max |y| = {before.MaxAbs():G4})");
        }
        else Console.Out.WriteLine("verification skipped: the model file holds no input; give --input-shape to probe it");
        if (a.Option("out") is { } outPath)
        {
            ModelFile.Write(outPath, fused, src.ProbeInput, src.ProbeInput is { } p ? Forward.Run(fused, p) : null, $"{src.Label} fused by fusion fuse");
            Console.Out.WriteLine($"wrote {outPath}");
        }
        return 0;
    }

    /// <summary>The groups from <c>--groups "a,b;c,d"</c>, <c>--groups-file F</c> (a JSON list as in a fixture's <c>fuse</c>),
    /// or, for a zoo model without either, torchvision's own <c>fuse_model()</c> groups.</summary>
    private static object GroupsFrom(CliArgs a, ModelSource src)
    {
        var text = a.Option("groups");
        var file = a.Option("groups-file");
        if (text is not null && file is not null) throw new UsageException("give --groups or --groups-file, not both");
        if (text is not null)
            return text.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(g => g.Split(',', StringSplitOptions.TrimEntries)).ToList();
        if (file is not null)
        {
            try { return JsonNode.Parse(File.ReadAllText(file)) ?? throw new UsageException($"{file}: holds null, expected a JSON list"); }
            catch (System.Text.Json.JsonException e) { throw new UsageException($"{file}: not valid JSON: {e.Message}"); }
            catch (IOException e) { throw new UsageException($"{file}: {e.Message}"); }
        }
        return src.ZooGroups ?? throw new UsageException("give the groups: --groups \"conv1,bn1,relu1;fc,relu2\" or --groups-file F");
    }
}
