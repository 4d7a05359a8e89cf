using System.CommandLine;
using System.Globalization;
using Fusion.Dsl.Algebra;

namespace Fusion.Cli.Commands;

/// <summary><c>fusion inspect</c>: prints a model's tree with the parameter count of every subtree.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = new ModelSource.Options();
        var c = model.AddTo(new Command("inspect", "print a model's tree with parameter counts"));
        c.SetAction(r =>
        {
            var src = model.Load(r);
            var m = src.Model;
            Console.Out.WriteLine($"{src.Label}: {m.TypeName}, {Count(m.ParameterCount())} parameters, {Count(m.StateElementCount() - m.ParameterCount())} buffer elements, {m.NamedModules().Count()} modules");
            Print(m, "", "", Console.Out);
            return 0;
        });
        return c;
    }

    /// <summary>Writes the tree: one line per module with its arguments, mode and subtree element count.</summary>
    public static void Print(Module m, string name, string indent, TextWriter w)
    {
        var label = name.Length == 0 ? "" : name + ": ";
        var mode = m.Training ? " [train]" : "";
        var n = m.ParameterCount();
        w.WriteLine($"{indent}{label}{m}{mode}{(n > 0 ? "  " + Count(n) : "")}");
        foreach (var c in m.Children) Print(c.Module, c.Name, indent + "  ", w);
    }

    public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
}
