using System.CommandLine;
using Fusion.Dsl;
using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion fuse</c>: fuses the given groups as <c>fuse_modules</c> (or <c>fuse_modules_qat</c> with <c>--qat</c>) does,
/// verifies the result on a probe input (<see cref="Verification"/>), and optionally writes the fused model in the <c>fusion-model/1</c> format.
/// </summary>
internal static class FuseCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var groups = new Option<string?>("--groups") { Description = "the groups, e.g. \"conv1,bn1,relu1;fc,relu2\" or a JSON list '[[\"conv1\",\"bn1\"]]' (default for a zoo network: torchvision's fuse_model() groups)" };
        var groupsFile = new Option<string?>("--groups-file") { Description = "a JSON file holding modules_to_fuse as PyTorch takes it" };
        var qat = new Option<bool>("--qat") { Description = "fuse_modules_qat: keep BatchNorm for quantization-aware training" };
        var output = new Option<string?>("--out") { Description = "write the fused model, by extension: FILE.onnx (ONNX), FILE.pt/.pth (the state_dict as torch.save writes it), FILE.safetensors (the state_dict), FILE.json (+ FILE.safetensors) or a directory (model.json + model.safetensors)" };
        var format = new Option<string>("--format")
        {
            Description = "what --out writes: model (the fusion-model/1 pair) or pt (only the fused state_dict, as torch.save writes it: FILE.pt, or DIR/model.pt)",
            DefaultValueFactory = _ => "model",
        };
        format.AcceptOnlyFromAmong("model", "pt");
        output.Validators.Add(Validate.FileName);
        var noVerify = Verification.NoVerifyOption();
        var rules = ModelOutput.RulesOption();
        var dynamicBatch = ModelOutput.DynamicBatchOption();
        var c = model.AddTo(new Command("fuse", "fuse groups as PyTorch's fuse_modules does, verify on a probe input, optionally write the result"));
        foreach (var o in new Option[] { groups, groupsFile, qat, output, format, noVerify, rules, dynamicBatch }) c.Options.Add(o);
        c.SetAction(r =>
        {
            var outPath = r.GetValue(output);
            var asPt = r.GetValue(format) == "pt";
            if (asPt && outPath is null) throw new UsageException("--format pt needs --out FILE.pt");
            if (asPt && Directory.Exists(outPath)) outPath = Path.Combine(outPath, "model.pt");
            var src = model.Load(r);
            var spec = GroupsFrom(r.GetValue(groups), r.GetValue(groupsFile), src);
            var isQat = r.GetValue(qat);
            // Refused before fusing, so nothing is written and no time is spent.
            if (outPath is not null) ModelOutput.RefuseUnsafeTargets(outPath, asPt, src, r.GetValue(groupsFile));
            var options = new FuseOptions { Rules = ModelOutput.Rules(r.GetValue(rules)!) };
            var fused = isQat ? Fuser.FuseModulesQat(src.Model, spec, options) : Fuser.FuseModules(src.Model, spec, options);
            Console.Out.WriteLine($"fused {spec.FusionGroups().Count} group(s) of {src.Label} with {(isQat ? "fuse_modules_qat" : "fuse_modules")}");
            if (!Verification.Passes(src, fused, r.GetValue(noVerify), Console.Out, outPath)) return 1;
            if (outPath is not null && asPt) ModelOutput.WriteCheckpoint(outPath, fused);
            else if (outPath is not null) ModelOutput.Write(outPath, fused, src, $"{src.Label} fused by fusion fuse", r.GetValue(dynamicBatch));
            return 0;
        });
        return c;
    }

    /// <summary>The groups from <c>--groups</c>, <c>--groups-file</c>, or, for a zoo model without either, torchvision's own
    /// <c>fuse_model()</c> groups; parsed once, into the typed list the facade takes.</summary>
    private static FuseSpec GroupsFrom(string? text, string? file, ModelSource src)
    {
        if (text is not null && file is not null) throw new UsageException("give --groups or --groups-file, not both");
        // A JSON list, as fuse_modules takes it and auto --json prints it, or the short form "a,b;c,d".
        if (text is not null && text.TrimStart().StartsWith('[')) return FuseSpecJson.Parse(text, "--groups");
        if (text is not null)
            return FuseSpec.OfGroups(text.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(g => g.Split(',', StringSplitOptions.TrimEntries)));
        if (file is not null) return FuseSpecJson.Read(file);
        return src.ZooGroups is { } z ? FuseSpec.OfGroups(z)
            : throw new UsageException("give the groups: --groups \"conv1,bn1,relu1;fc,relu2\" or --groups-file F");
    }
}
