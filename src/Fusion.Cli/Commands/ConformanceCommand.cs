using System.CommandLine;
using Fusion.Dsl.Conformance;

namespace Fusion.Cli.Commands;

/// <summary><c>fusion conformance PATH...</c>: runs fixture cases, one line each, then <c>N passed, M failed</c>.</summary>
internal static class ConformanceCommand
{
    public static Command Create()
    {
        var paths = new Argument<string[]>("PATH") { Description = "fusion-fixture/1 case files or folders of them", Arity = ArgumentArity.OneOrMore };
        var quiet = new Option<bool>("--quiet") { Description = "print only failing cases and the count line" };
        var c = new Command("conformance", "run fusion-fixture/1 cases against PyTorch's results, one line each, then N passed, M failed") { paths, quiet };
        c.SetAction(r =>
        {
            var given = r.GetValue(paths)!;
            IReadOnlyList<string> cases;
            try { cases = ConformanceRunner.FindCases(given); }
            catch (FileNotFoundException e) { throw new UsageException(e.Message); }
            if (cases.Count == 0) throw new UsageException("no case files (*.json) under " + string.Join(", ", given));
            int passed = 0, failed = 0;
            foreach (var path in cases)
            {
                var result = ConformanceRunner.Run(path);
                if (result.Passed) passed++; else failed++;
                if (!result.Passed || !r.GetValue(quiet)) Console.Out.WriteLine($"{result}  ({result.Elapsed.TotalMilliseconds:F0} ms)");
            }
            Console.Out.WriteLine($"{passed} passed, {failed} failed");
            return failed == 0 ? 0 : 1;
        });
        return c;
    }
}
