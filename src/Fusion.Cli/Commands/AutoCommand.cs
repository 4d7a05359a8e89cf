using System.CommandLine;
using System.Text.Json;
using Fusion.Dsl;
using Fusion.Dsl.Rules;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion auto</c>: finds every group the rules can fuse, honouring the dataflow safety check, and prints it in the
/// list-of-lists form <c>fuse_modules</c> takes (<c>--json</c>: exactly that JSON, usable as <c>fusion fuse --groups-file</c>).
/// </summary>
internal static class AutoCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var json = new Option<bool>("--json") { Description = "print the groups as the JSON list fuse_modules takes" };
        var rulesOption = new Option<string>("--rules") { Description = "default (PyTorch's patterns) or extended (plus this project's)", DefaultValueFactory = _ => "default" };
        rulesOption.AcceptOnlyFromAmong("default", "extended");
        var qat = new Option<bool>("--qat") { Description = "find groups for fuse_modules_qat" };
        var c = model.AddTo(new Command("auto", "find every group the rules can fuse safely"));
        c.Options.Add(json);
        c.Options.Add(rulesOption);
        c.Options.Add(qat);
        c.SetAction(r =>
        {
            var src = model.Load(r);
            var rulesName = r.GetValue(rulesOption)!;
            var rules = rulesName == "extended" ? RuleSet.Extended : RuleSet.Default;
            var groups = Fuser.FindFusableGroups(src.Model, rules, r.GetValue(qat));
            if (r.GetValue(json))
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(groups));
                return 0;
            }
            Console.Out.WriteLine($"{src.Label}: {groups.Count} fusable group(s) with the {rulesName} rules");
            foreach (var g in groups)
                Console.Out.WriteLine("  " + string.Join(", ", g) + "   (" + string.Join(" + ", g.Select(p => Fusion.Dsl.Algebra.ModulePath.Get(src.Model, p).TypeName)) + ")");
            return 0;
        });
        return c;
    }
}
