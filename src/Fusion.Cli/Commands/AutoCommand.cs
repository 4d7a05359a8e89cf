using System.CommandLine;
using System.Text.Json;
using Fusion.Dsl;
using Fusion.Dsl.Rules;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion auto</c>: finds every group the rules can fuse, honouring the dataflow safety check, and prints it in the
/// list-of-lists form <c>fuse_modules</c> takes (<c>--json</c>: exactly that JSON, usable as <c>fusion fuse --groups-file</c>);
/// with <c>--out</c> it fuses them, verifies the result as <c>fusion fuse</c> does, and writes it.
/// </summary>
internal static class AutoCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var json = new Option<bool>("--json") { Description = "print the groups as the JSON list fuse_modules takes" };
        var rulesOption = ModelOutput.RulesOption();
        var dynamicBatch = ModelOutput.DynamicBatchOption();
        var qat = new Option<bool>("--qat") { Description = "find groups for fuse_modules_qat" };
        var output = new Option<string?>("--out") { Description = "fuse the groups found, verify the result on a probe input and write it, by extension: FILE.onnx (ONNX), FILE.pt/.pth or FILE.safetensors (the state_dict), else a fusion-model/1 file" };
        output.Validators.Add(Validate.FileName);
        var noVerify = Verification.NoVerifyOption();
        var c = model.AddTo(new Command("auto", "find every group the rules can fuse safely"));
        c.Options.Add(json);
        c.Options.Add(rulesOption);
        c.Options.Add(qat);
        c.Options.Add(output);
        c.Options.Add(noVerify);
        c.Options.Add(dynamicBatch);
        c.SetAction(r =>
        {
            var src = model.Load(r);
            if (r.GetValue(output) is { } target) ModelOutput.RefuseUnsafeTargets(target, oneFile: false, src);
            var rulesName = r.GetValue(rulesOption)!;
            var rules = ModelOutput.Rules(rulesName);
            var isQat = r.GetValue(qat);
            var groups = Fuser.FindFusableGroups(src.Model, rules, isQat);
            // Eval fusion folds a BatchNorm only in eval mode, so a model saved in training mode shows fewer groups: say why.
            var training = isQat ? 0 : src.Model.NamedModules().Count(kv => kv.Value.Training);
            if (training > 0)
                (r.GetValue(json) ? Console.Error : Console.Out).WriteLine(
                    $"note: {training} module(s) are in training mode, and eval fusion folds a BatchNorm only in eval mode, so groups holding one were left out; add --eval to fuse the model as model.eval() would, or --qat for fuse_modules_qat");
            var options = new FuseOptions { Rules = rules };
            // No group found: the model stays as it is (fuse_modules refuses an empty list; auto found nothing to fuse).
            Fusion.Dsl.Algebra.Module Chains() => groups.Count == 0 ? src.Model
                : isQat ? Fuser.FuseModulesQat(src.Model, groups.Select(g => (IEnumerable<string>)g), options)
                : Fuser.FuseModules(src.Model, groups.Select(g => (IEnumerable<string>)g), options);
            // Graph rules (the extended set's residual adds) match the chain-fused model: the Identity a folded BatchNorm leaves
            // sits between a convolution and its add.
            var chains = rules.GraphRules.Length == 0 && r.GetValue(output) is null ? src.Model : Chains();
            var graphFusions = rules.GraphRules.Length == 0 ? [] : Fuser.FindGraphFusions(chains, rules);
            if (r.GetValue(json)) Console.Out.WriteLine(JsonSerializer.Serialize(groups));
            else
            {
                Console.Out.WriteLine($"{src.Label}: {groups.Count} fusable group(s) with the {rulesName} rules");
                foreach (var g in groups)
                    Console.Out.WriteLine("  " + string.Join(", ", g) + "   (" + string.Join(" + ", g.Select(p => Fusion.Dsl.Algebra.ModulePath.Get(src.Model, p).TypeName)) + ")");
                if (rules.GraphRules.Length > 0)
                {
                    Console.Out.WriteLine($"then {graphFusions.Count} graph rewrite(s):");
                    foreach (var f in graphFusions) Console.Out.WriteLine("  " + f);
                }
            }
            if (r.GetValue(output) is { } outPath)
            {
                var fused = graphFusions.Count == 0 ? chains : Fuser.FuseGraphs(chains, rules);
                // With --json the standard output is the JSON alone; the note goes to standard error.
                var previous = Console.Out;
                if (r.GetValue(json)) Console.SetOut(Console.Error);
                try
                {
                    if (!Verification.Passes(src, fused, r.GetValue(noVerify), Console.Out, outPath)) return 1;
                    ModelOutput.Write(outPath, fused, src, $"{src.Label} fused by fusion auto", r.GetValue(dynamicBatch));
                }
                finally { Console.SetOut(previous); }
            }
            return 0;
        });
        return c;
    }
}
