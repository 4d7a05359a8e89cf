using System.Globalization;
using System.Text;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Display;

/// <summary>
/// PyTorch's <c>print(model)</c>: <c>nn.Module.__repr__</c> with each layer's <c>extra_repr</c> as torch 1.13 writes it, so a
/// PyTorch user recognises the tree (<c>Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)</c>,
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
    public static string Header(Module module) => $"{module.TypeName}({ExtraRepr(module)})";

    /// <summary>The module's own <c>extra_repr()</c> (empty for containers, Identity and Hardswish, as in PyTorch).</summary>
    public static string ExtraRepr(Module module) => module switch
    {
        Conv c => ConvRepr(c),
        BatchNorm b => $"{b.NumFeatures}, eps={PyFloat(b.Eps)}, momentum={(b.Momentum is { } m ? PyFloat(m) : "None")}, " +
                       $"affine={PyBool(b.Affine)}, track_running_stats={PyBool(b.TrackRunningStats)}",
        Linear l => $"in_features={l.InFeatures}, out_features={l.OutFeatures}, bias={PyBool(l.HasBias)}",
        // Hardswish and Hardsigmoid have no extra_repr in PyTorch, so their inplace flag never shows.
        Activation a => a.Inplace && a.Kind is not (ActivationKind.Hardswish or ActivationKind.Hardsigmoid) ? "inplace=True" : "",
        Dropout d => $"p={PyFloat(d.P)}, inplace={PyBool(d.Inplace)}",
        Flatten f => $"start_dim={f.StartDim}, end_dim={f.EndDim}",
        MaxPool2d p => $"kernel_size={Size(p.KernelSize, p.ScalarArguments, "kernel_size")}, stride={Size(p.Stride, p.ScalarArguments, "stride")}, " +
                       $"padding={Size(p.Padding, p.ScalarArguments, "padding")}, dilation={Size(p.Dilation, p.ScalarArguments, "dilation")}, " +
                       $"ceil_mode={PyBool(p.CeilMode)}",
        AvgPool2d p => $"kernel_size={Size(p.KernelSize, p.ScalarArguments, "kernel_size")}, stride={Size(p.Stride, p.ScalarArguments, "stride")}, " +
                       $"padding={Size(p.Padding, p.ScalarArguments, "padding")}",
        AdaptiveAvgPool2d p => $"output_size={Size(p.OutputSize, p.ScalarArguments, "output_size")}",
        _ => "",
    };

    private static void Write(Module m, StringBuilder sb, string indent)
    {
        var extra = ExtraRepr(m);
        sb.Append(m.TypeName).Append('(');
        if (m.Children.Count == 0)
        {
            sb.Append(extra).Append(')');
            return;
        }
        var inner = indent + "  ";
        if (extra.Length > 0) sb.Append('\n').Append(inner).Append(extra);
        foreach (var c in m.Children)
        {
            sb.Append('\n').Append(inner).Append('(').Append(c.Name).Append("): ");
            Write(c.Module, sb, inner);
        }
        sb.Append('\n').Append(indent).Append(')');
    }

    private static string ConvRepr(Conv c)
    {
        var s = new StringBuilder($"{c.InChannels}, {c.OutChannels}, kernel_size={IntOrTuple.PyTuple(c.KernelSize)}, stride={IntOrTuple.PyTuple(c.Stride)}");
        if (c.Padding.Kind != PaddingKind.Explicit) s.Append(", padding=").Append(c.Padding.Kind.ToString().ToLowerInvariant());
        else if (c.Padding.Amounts.Any(x => x != 0)) s.Append(", padding=").Append(IntOrTuple.PyTuple(c.Padding.Amounts));
        if (c.Dilation.Any(x => x != 1)) s.Append(", dilation=").Append(IntOrTuple.PyTuple(c.Dilation));
        if (c.OutputPadding.Any(x => x != 0)) s.Append(", output_padding=").Append(IntOrTuple.PyTuple(c.OutputPadding));
        if (c.Groups != 1) s.Append(", groups=").Append(c.Groups);
        if (!c.HasBias) s.Append(", bias=False");
        if (c.PaddingMode != PaddingMode.Zeros) s.Append(", padding_mode=").Append(c.PaddingMode.ToString().ToLowerInvariant());
        return s.ToString();
    }

    /// <summary>An int when PyTorch kept the argument as an int, else the tuple.</summary>
    private static string Size(IReadOnlyList<int> values, IEnumerable<string> scalars, string name)
        => scalars.Contains(name) ? values[0].ToString(CultureInfo.InvariantCulture) : IntOrTuple.PyTuple(values);

    private static string PyBool(bool b) => b ? "True" : "False";

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest digits that round-trip, in fixed notation for exponents -4..15
    /// (<c>0.1</c>, <c>100.0</c>) and scientific otherwise (<c>1e-05</c>, <c>1.5e+16</c>).
    /// </summary>
    internal static string PyFloat(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        if (v == 0) return double.IsNegative(v) ? "-0.0" : "0.0";
        // "E16" is not shortest; "R" is, so take its digits and exponent and lay them out as Python does.
        var r = Math.Abs(v).ToString("R", CultureInfo.InvariantCulture);
        var e = 0;
        var ei = r.IndexOfAny(['E', 'e']);
        if (ei >= 0) { e = int.Parse(r[(ei + 1)..], CultureInfo.InvariantCulture); r = r[..ei]; }
        var dot = r.IndexOf('.');
        var intPart = dot < 0 ? r : r[..dot];
        var digits = (intPart + (dot < 0 ? "" : r[(dot + 1)..])).TrimStart('0');
        var lead = r.Replace(".", "").Length - r.Replace(".", "").TrimStart('0').Length;
        // Exponent of the first significant digit: value = d.ddd x 10^exp.
        var exp = e + intPart.Length - 1 - lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        var sign = v < 0 ? "-" : "";
        if (exp < -4 || exp >= 16)
        {
            var mant = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            return $"{sign}{mant}e{(exp < 0 ? "-" : "+")}{Math.Abs(exp):00}";
        }
        if (exp < 0) return $"{sign}0.{new string('0', -exp - 1)}{digits}";
        var whole = digits.Length > exp + 1 ? digits[..(exp + 1)] : digits.PadRight(exp + 1, '0');
        var frac = digits.Length > exp + 1 ? digits[(exp + 1)..] : "0";
        return $"{sign}{whole}.{frac}";
    }
}
