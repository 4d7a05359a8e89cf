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
    public static int Run(string[] args)
    {
        var a = CliArgs.Parse(args, [.. ModelSource.Options, "rules"], ["json", "qat"]);
        var src = ModelSource.From(a);
        var rules = a.Option("rules") switch
        {
            null or "default" => RuleSet.Default,
            "extended" => RuleSet.Extended,
            var other => throw new UsageException($"--rules takes 'default' (PyTorch's patterns) or 'extended' (plus this project's), got '{other}'"),
        };
        var groups = Fuser.FindFusableGroups(src.Model, rules, a.Flag("qat"));
        if (a.Flag("json"))
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(groups));
            return 0;
        }
        Console.Out.WriteLine($"{src.Label}: {groups.Count} fusable group(s) with the {a.Option("rules") ?? "default"} rules");
        foreach (var g in groups)
            Console.Out.WriteLine("  " + string.Join(", ", g) + "   (" + string.Join(" + ", g.Select(p => Fusion.Dsl.Algebra.ModulePath.Get(src.Model, p).TypeName)) + ")");
        return 0;
    }
}
