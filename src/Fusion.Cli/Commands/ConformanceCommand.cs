using Fusion.Dsl.Conformance;

namespace Fusion.Cli.Commands;

/// <summary><c>fusion conformance PATH...</c>: runs fixture cases, one line each, then <c>N passed, M failed</c>.</summary>
internal static class ConformanceCommand
{
    public static int Run(string[] args)
    {
        var a = CliArgs.Parse(args, [], ["quiet"]);
        if (a.Positional.Count == 0) throw new UsageException("conformance needs at least one case file or folder");
        IReadOnlyList<string> cases;
        try { cases = ConformanceRunner.FindCases(a.Positional); }
        catch (FileNotFoundException e) { throw new UsageException(e.Message); }
        if (cases.Count == 0) throw new UsageException("no case files (*.json) under " + string.Join(", ", a.Positional));
        int passed = 0, failed = 0;
        foreach (var path in cases)
        {
            var r = ConformanceRunner.Run(path);
            if (r.Passed) passed++; else failed++;
            if (!r.Passed || !a.Flag("quiet")) Console.Out.WriteLine($"{r}  ({r.Elapsed.TotalMilliseconds:F0} ms)");
        }
        Console.Out.WriteLine($"{passed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }
}
