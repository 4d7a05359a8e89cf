using System.Globalization;
using System.Net;
using System.Text;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;

namespace Fusion.Dsl.Display;

/// <summary>
/// A model as HTML for notebooks: a collapsible tree (<c>&lt;details&gt;</c> per container) whose lines read as
/// <see cref="ModuleRepr"/>'s, each with the subtree's parameter count. Plain strings with no dependency, so any notebook kernel
/// can show them. A module whose forward runs in training mode (<see cref="Module.RunsInTraining"/>) is marked <c>[train]</c>.
/// In .NET Interactive register it once:
/// <c>Formatter.Register&lt;Module&gt;((m, w) =&gt; w.Write(ModuleHtml.Tree(m)), "text/html")</c>.
/// </summary>
public static class ModuleHtml
{
    /// <summary>The tree, containers collapsible and open to <paramref name="openDepth"/> levels, with parameter counts.</summary>
    public static string Tree(Module module, int openDepth = 1)
    {
        ArgumentNullException.ThrowIfNull(module);
        var sb = new StringBuilder("<div class=\"fusion-module\" style=\"font-family:monospace;white-space:nowrap\">");
        Write(module, null, 0, openDepth, sb);
        return sb.Append("</div>").ToString();
    }

    /// <summary>Two trees side by side (such as a model and its fused form) with a title over each, and the
    /// <see cref="ModelDiff"/> between them under both.</summary>
    public static string SideBySide(Module left, Module right, string leftTitle = "unfused", string rightTitle = "fused", int openDepth = 1)
    {
        ArgumentNullException.ThrowIfNull(left);
        ArgumentNullException.ThrowIfNull(right);
        var diff = ModelDiff.Compare(left, right);
        return "<table class=\"fusion-side-by-side\"><tr>" +
               $"<th style=\"text-align:left\">{Enc(leftTitle)}</th><th style=\"text-align:left\">{Enc(rightTitle)}</th></tr>" +
               $"<tr><td style=\"vertical-align:top\">{Tree(left, openDepth)}</td><td style=\"vertical-align:top\">{Tree(right, openDepth)}</td></tr>" +
               $"<tr><td colspan=\"2\"><pre>{Enc(diff.ToString())}</pre></td></tr></table>";
    }

    private static void Write(Module m, string? name, int depth, int openDepth, StringBuilder sb)
    {
        var count = m.ParameterCount();
        var line = (name is null ? "" : $"({name}): ") + ModuleRepr.Header(m) + (m.RunsInTraining ? " [train]" : "");
        var label = $"{Enc(line)} <span style=\"color:gray\">{Enc(Params(count))}</span>";
        if (m.Children.Count == 0)
        {
            sb.Append("<div style=\"margin-left:1.2em\">").Append(label).Append("</div>");
            return;
        }
        sb.Append(depth < openDepth ? "<details open" : "<details").Append(" style=\"margin-left:1.2em\"><summary>").Append(label).Append("</summary>");
        foreach (var c in m.Children) Write(c.Module, c.Name, depth + 1, openDepth, sb);
        sb.Append("</details>");
    }

    private static string Params(long n) => n == 1 ? "1 parameter" : n.ToString("N0", CultureInfo.InvariantCulture) + " parameters";

    private static string Enc(string s) => WebUtility.HtmlEncode(s);
}
