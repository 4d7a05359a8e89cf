using System.Collections;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Conformance;

/// <summary>
/// Compares a module tree with an expected one the way the conformance runner needs: kinds, names, order,
/// training flags and arguments exactly; state tensors by key, shape and value within a tolerance.
/// Reports the first difference with its dotted path, so a failing case says where it went wrong.
/// </summary>
public static class ModuleComparison
{
    /// <summary>
    /// The first difference between <paramref name="actual"/> and <paramref name="expected"/>, or null when they agree.
    /// Tensors agree when <c>max|a-e| &lt;= atol + rtol * max|e|</c>, and integer tensors exactly.
    /// </summary>
    public static string? FirstDifference(Module actual, Module expected, double rtol, double atol)
        => Compare(actual, expected, "", rtol, atol);

    private static string? Compare(Module a, Module e, string path, double rtol, double atol)
    {
        var where = path.Length == 0 ? "the root" : $"'{path}'";
        if (a.TypeName != e.TypeName) return $"{where}: expected {e.TypeName}, got {a.TypeName}";
        if (a.Training != e.Training) return $"{where} ({a.TypeName}): expected training={e.Training}, got {a.Training}";
        var argDiff = CompareArguments(a, e);
        if (argDiff is not null) return $"{where} ({a.TypeName}): {argDiff}";
        var an = a.Children.Names.ToArray();
        var en = e.Children.Names.ToArray();
        if (!an.SequenceEqual(en))
            return $"{where} ({a.TypeName}): expected children [{string.Join(", ", en)}], got [{string.Join(", ", an)}]";
        var ak = a.State.Names.ToArray();
        var ek = e.State.Names.ToArray();
        if (!ak.SequenceEqual(ek))
            return $"{where} ({a.TypeName}): expected state [{string.Join(", ", ek)}], got [{string.Join(", ", ak)}]";
        foreach (var (name, et) in e.State)
        {
            var at = a.State[name];
            var key = ModulePath.Join(path, name);
            if (at.DType != et.DType) return $"'{key}': expected {et.DType}, got {at.DType}";
            if (!at.Shape.SequenceEqual(et.Shape))
                return $"'{key}': expected shape {Tensor.ShapeString(et.Shape)}, got {Tensor.ShapeString(at.Shape)}";
            if (et.DType == DType.Int64 ? !at.Equals(et) : !at.IsCloseTo(et, rtol, atol))
                return $"'{key}': values differ (max |diff| {at.MaxAbsDiff(et):G4}, allowed {atol + rtol * et.MaxAbs():G4})";
        }
        foreach (var c in e.Children)
        {
            var d = Compare(a.Children[c.Name], c.Module, ModulePath.Join(path, c.Name), rtol, atol);
            if (d is not null) return d;
        }
        return null;
    }

    private static string? CompareArguments(Module a, Module e)
    {
        var aa = a.Arguments.ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (k, ev) in e.Arguments)
        {
            if (!aa.TryGetValue(k, out var av)) return $"argument {k} missing";
            if (!ArgumentEquals(av, ev)) return $"argument {k}: expected {Show(ev)}, got {Show(av)}";
        }
        return null;
    }

    private static bool ArgumentEquals(object? a, object? b) => (a, b) switch
    {
        (null, null) => true,
        (string x, string y) => x == y,
        (IEnumerable x, IEnumerable y) => x.Cast<object?>().SequenceEqual(y.Cast<object?>()),
        _ => Equals(a, b),
    };

    private static string Show(object? v) => v switch
    {
        null => "None",
        string s => $"'{s}'",
        IEnumerable xs => "(" + string.Join(", ", xs.Cast<object?>()) + ")",
        _ => v.ToString() ?? "",
    };
}
