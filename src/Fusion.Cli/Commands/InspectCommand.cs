using System.CommandLine;
using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;

namespace Fusion.Cli.Commands;

/// <summary><c>fusion inspect</c>: prints a model's tree with the parameter count of every subtree, or with <c>--diff A B</c>
/// what fusion changed from model A to model B (<see cref="ModelDiff"/>).</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var diff = new Option<string[]>("--diff")
        {
            Description = "A B: instead of one tree, what fusion changed from model file A to model file B " +
                          "(groups replaced, modules turned into Identity, parameters folded away)",
            Arity = new ArgumentArity(2, 2),
            AllowMultipleArgumentsPerToken = true,
        };
        var c = model.AddTo(new Command("inspect", "print a model's tree with parameter counts, or with --diff A B what fusion changed"));
        c.Options.Add(diff);
        c.SetAction(r =>
        {
            if (r.GetValue(diff) is { Length: > 0 } pair)
            {
                if (r.GetValue(model.File) is not null || r.GetValue(model.Zoo) is not null)
                    throw new UsageException("--diff takes the two model files itself; give no other MODEL or --model");
                var a = ModelSource.From(pair[0], null, 1, null, null);
                var b = ModelSource.From(pair[1], null, 1, null, null);
                Console.Out.WriteLine($"{a.Label} -> {b.Label}");
                Console.Out.WriteLine(ModelDiff.Compare(a.Model, b.Model));
                return 0;
            }
            var src = model.Load(r);
            var m = src.Model;
            Console.Out.WriteLine($"{src.Label}: {m.TypeName}, {Count(m.ParameterCount())} parameters, {Count(m.StateElementCount() - m.ParameterCount())} buffer elements, {m.NamedModules().Count()} modules");
            Print(m, "", "", Console.Out);
            return 0;
        });
        return c;
    }

    /// <summary>Writes the tree: one line per module with PyTorch's arguments, the mode when its forward trains, and the
    /// subtree's parameter count.</summary>
    public static void Print(Module m, string name, string indent, TextWriter w)
    {
        var label = name.Length == 0 ? "" : name + ": ";
        // A fused container's own flag is PyTorch's True even in an eval model; what its forward does is what matters.
        var mode = m.RunsInTraining ? " [train]" : "";
        var n = m.ParameterCount();
        w.WriteLine($"{indent}{label}{ModuleRepr.Header(m)}{mode}{(n > 0 ? "  " + Count(n) : "")}");
        foreach (var c in m.Children) Print(c.Module, c.Name, indent + "  ", w);
    }

    public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
}
