using System.Globalization;
using System.Text;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// PyTorch's <c>print(model)</c>: <c>nn.Module.__repr__</c>, with each module's <see cref="Module.ExtraRepr"/> as torch 1.13's
/// <c>extra_repr()</c> writes it, so a PyTorch user recognises the tree (<c>Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1))</c>,
/// children as <c>(name): ...</c> indented by two spaces). <see cref="Module.ToString"/> returns <see cref="Print"/>.
/// </summary>
public static class ModuleRepr
{
    /// <summary>The whole tree as <c>repr(model)</c> prints it.</summary>
    public static string Print(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var sb = new StringBuilder();
        Write(module, sb, "");
        return sb.ToString();
    }

    /// <summary>One line for the module alone, children left out: <c>TypeName(extra_repr)</c>.</summary>
    public static string Header(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return $"{module.TypeName}({module.ExtraRepr})";
    }

    // As torch's Module.__repr__: the extra_repr alone on one line when there are no children, else one line per entry.
    private static void Write(Module m, StringBuilder sb, string indent)
    {
        var extra = m.ExtraRepr;
        sb.Append(m.TypeName).Append('(');
        if (m.Children.Count == 0)
        {
            sb.Append(extra).Append(')');
            return;
        }
        var inner = indent + "  ";
        if (extra.Length > 0) sb.Append('\n').Append(inner).Append(extra.Replace("\n", "\n" + inner));
        foreach (var c in m.Children)
        {
            sb.Append('\n').Append(inner).Append('(').Append(c.Name).Append("): ");
            Write(c.Module, sb, inner);
        }
        sb.Append('\n').Append(indent).Append(')');
    }

    /// <summary>Python's <c>True</c> / <c>False</c>.</summary>
    internal static string Bool(bool b) => b ? "True" : "False";

    /// <summary>Python's tuple text: <c>(3, 1)</c>, and <c>(3,)</c> for one element.</summary>
    internal static string Tuple(IEnumerable<int> values)
    {
        var v = values.ToArray();
        return v.Length == 1 ? $"({v[0]},)" : "(" + string.Join(", ", v) + ")";
    }

    /// <summary>A size PyTorch kept as given: the int when <paramref name="asInt"/>, else the tuple.</summary>
    internal static string Size(IReadOnlyList<int> values, bool asInt)
        => asInt ? values[0].ToString(CultureInfo.InvariantCulture) : Tuple(values);

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest digits that round-trip, in fixed notation for decimal exponents -4..15
    /// (<c>0.1</c>, <c>100.0</c>) and scientific otherwise (<c>1e-05</c>, <c>1.5e+16</c>).
    /// </summary>
    internal static string Float(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        if (v == 0) return double.IsNegative(v) ? "-0.0" : "0.0";
        // .NET's "R" gives the shortest round-trip digits (Python's too); only the layout differs, so take digits and exponent.
        var r = Math.Abs(v).ToString("R", CultureInfo.InvariantCulture);
        var e = 0;
        var ei = r.IndexOf('E');
        if (ei >= 0) { e = int.Parse(r[(ei + 1)..], CultureInfo.InvariantCulture); r = r[..ei]; }
        var dot = r.IndexOf('.');
        var all = r.Replace(".", "");
        var leadingZeros = all.Length - all.TrimStart('0').Length;
        // Decimal exponent of the first significant digit: v = d.ddd x 10^exp.
        var exp = e + (dot < 0 ? r.Length : dot) - 1 - leadingZeros;
        var digits = all.Trim('0');
        var sign = v < 0 ? "-" : "";
        if (exp < -4 || exp >= 16)
            return $"{sign}{(digits.Length == 1 ? digits : digits[0] + "." + digits[1..])}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):00}";
        if (exp < 0) return $"{sign}0.{new string('0', -exp - 1)}{digits}";
        return digits.Length > exp + 1
            ? $"{sign}{digits[..(exp + 1)]}.{digits[(exp + 1)..]}"
            : $"{sign}{digits.PadRight(exp + 1, '0')}.0";
    }
}
