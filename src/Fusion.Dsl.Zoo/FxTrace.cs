using System.Text;
using System.Text.RegularExpressions;
using Fusion.Dsl.Graphs;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// Records a forward pass as <c>torch.fx.symbolic_trace</c> would: nodes in call order, named by fx's own rule
/// (<c>Graph._target_to_str</c> then <c>_Namespace.create_name</c>), so <c>layer1.0.conv1</c> becomes node
/// <c>layer1_0_conv1</c> and the second <c>add</c> becomes <c>add_1</c>. The zoo's builders call it in the order
/// their PyTorch <c>forward</c> runs.
/// </summary>
internal sealed partial class FxTrace
{
    private readonly List<GraphNode> _nodes = [];
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);
    // fx refuses Python keywords as node names (builtins too, but no zoo target is named like one).
    private static readonly HashSet<string> PythonKeywords =
    [
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
        "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or",
        "pass", "raise", "return", "try", "while", "with", "yield",
    ];

    /// <summary>The graph input, named as the forward's parameter.</summary>
    public string Placeholder(string name) => Add(NodeOp.Placeholder, name, null, []);

    /// <summary>A call of the module at <paramref name="path"/> on the value of node <paramref name="input"/>.</summary>
    public string Module(string path, string input) => Add(NodeOp.CallModule, path, path, [GraphArg.Ref(input)]);

    /// <summary>A call of free function <paramref name="function"/> (the name fx records, e.g. <c>add</c>).</summary>
    public string Function(string function, GraphArg[] args, params KeyValuePair<string, GraphArg>[] kwargs)
        => Add(NodeOp.CallFunction, function, function, args, kwargs);

    /// <summary>The graph's result, the value of node <paramref name="result"/>.</summary>
    public void Output(string result) => Add(NodeOp.Output, "output", null, [GraphArg.Ref(result)]);

    /// <summary>The recorded graph.</summary>
    public Graph Build() => new(_nodes);

    private string Add(NodeOp op, string candidate, string? target, GraphArg[] args, KeyValuePair<string, GraphArg>[]? kwargs = null)
    {
        var name = CreateName(SnakeCase(candidate));
        _nodes.Add(new GraphNode(op, name, target, args, kwargs));
        return name;
    }

    /// <summary>fx's <c>_Namespace.create_name</c>: illegal characters become <c>_</c>; a taken name gets the next free
    /// numeric suffix, counting on from a suffix the candidate already has.</summary>
    private string CreateName(string candidate)
    {
        candidate = IllegalChars().Replace(candidate, "_");
        if (char.IsAsciiDigit(candidate[0])) candidate = "_" + candidate;
        var m = NumericSuffix().Match(candidate);
        var baseName = m.Success ? m.Groups[1].Value : candidate;
        var num = m.Success ? int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;
        if (m.Success) candidate = $"{baseName}_{num}";   // fx normalises the suffix ("x_01" -> "x_1")
        while (_used.Contains(candidate) || PythonKeywords.Contains(candidate))
        {
            num++;
            candidate = $"{baseName}_{num}";
        }
        _used.Add(candidate);
        return candidate;
    }

    /// <summary>fx's <c>_snake_case</c>: an underscore before an upper-case letter that follows a lower-case one.</summary>
    private static string SnakeCase(string s)
    {
        var sb = new StringBuilder(s.Length + 4);
        var prevLower = false;
        foreach (var c in s)
        {
            if (prevLower && char.IsUpper(c)) sb.Append('_');
            sb.Append(char.ToLowerInvariant(c));
            prevLower = char.IsLower(c);
        }
        return sb.ToString();
    }

    [GeneratedRegex("[^0-9a-zA-Z_]+")]
    private static partial Regex IllegalChars();

    [GeneratedRegex(@"^(.*)_(\d+)$")]
    private static partial Regex NumericSuffix();
}
