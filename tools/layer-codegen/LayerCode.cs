using System.Globalization;
using System.Text;
using Fusion.Dsl.Layers;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.LayerCodegen;

/// <summary>
/// The text each consumer of the layer kinds needs, made from the descriptors alone: the registry's list, the C# and F#
/// factories (typed parameters under PyTorch's names and defaults, forwarding to the descriptor's own factory), the F# active
/// patterns, the engine's table of forwards, the Python exporter's schema and the model format's table of arguments. Pure functions of the descriptors.
/// </summary>
public static class LayerCode
{
    private const int Width = 130;

    /// <summary>The entries of <c>LayerKinds</c>' list: each declaring class's property.</summary>
    public static string Registry(IReadOnlyList<LayerDeclaration> declarations)
        => GeneratedFiles.Lines(Fill("        ", [.. declarations.Select(d => (d.Member == "Descriptors" ? ".. " : "") + $"{d.Owner.Name}.{d.Member},")], ""));

    /// <summary>The entries of the engine's <c>LayerForwards</c> table: each kind's marked forward, its module cast to the class the
    /// method takes.</summary>
    public static string EngineForwards(IReadOnlyList<EngineForward> forwards)
        => GeneratedFiles.Lines(forwards.Select(f =>
            $"            [\"{f.TypeName}\"] = (ev, m, x) => {f.Method}(ev, ({(f.ModuleType.Namespace == typeof(LayerKinds).Namespace ? f.ModuleType.Name : "global::" + f.ModuleType.FullName)})m, x),"));

    /// <summary>The C# factories of <c>Fusion.Dsl.Nn</c>.</summary>
    public static string CSharpFactories(IReadOnlyList<LayerDescriptor> kinds)
    {
        var lines = new List<string>();
        foreach (var d in kinds)
        {
            var kept = Kept(d);
            lines.Add($"    /// <summary><c>nn.{d.TypeName}</c>{Sentence(d.Note)}</summary>");
            foreach (var p in kept)
                lines.Add($"    /// <param name=\"{Camel(p.Name)}\">PyTorch's <c>{p.Name}</c>{CSharpDefaultDoc(p)}.</param>");
            if (d.Seeded) lines.Add("    /// <param name=\"seed\">The seed PyTorch's default initialisation of the tensors is drawn from.</param>");
            lines.Add($"    /// <exception cref=\"ArgumentException\">An argument is refused (see <see cref=\"LayerDescriptor.Bind\"/>), or the {d.ModuleType.Name} rejects the values.</exception>");
            var parameters = kept.Select(CSharpParameter).Concat(d.Seeded ? ["int seed = 0"] : []).ToList();
            var arguments = kept.Select(CSharpArgument).ToList();
            lines.AddRange(Wrap("    ", $"public static {d.ModuleType.Name} {d.TypeName}(" + string.Join(", ", parameters) + ")", ", "));
            lines.AddRange(Wrap("        ", $"=> Layer<{d.ModuleType.Name}>(\"{d.TypeName}\", {(d.Seeded ? "seed" : "0")}" + string.Concat(arguments.Select(a => ", " + a)) + ");", ", "));
            lines.Add("");
        }
        return GeneratedFiles.Lines(lines.Take(lines.Count - 1));
    }

    /// <summary>The members of the F# <c>Nn</c> type (Nn.fs).</summary>
    public static string FSharpFactories(IReadOnlyList<LayerDescriptor> kinds)
    {
        var lines = new List<string>();
        foreach (var d in kinds)
        {
            var fsharpOrder = FSharpOrder(d);
            var head = $"static member {d.TypeName}(" + string.Join(", ", fsharpOrder.Select(p => p is null ? "?seed" : (p.Required ? "" : "?") + p.Name)) + ") : Module =";
            var call = Kept(d).Select(FSharpArgument).Concat(d.Seeded ? ["defaultArg seed 0"] : []).ToList();
            lines.AddRange(Wrap("    ", head, ", "));
            lines.AddRange(Wrap("        ", $"Fusion.Dsl.Nn.{d.TypeName}(" + string.Join(", ", call) + ")", ", "));
        }
        return GeneratedFiles.Lines(lines);
    }

    /// <summary>The signatures of the F# <c>Nn</c> members (Nn.fsi).</summary>
    public static string FSharpFactorySignatures(IReadOnlyList<LayerDescriptor> kinds)
    {
        var lines = new List<string>();
        foreach (var d in kinds)
        {
            var order = FSharpOrder(d);
            var late = order.SkipWhile(p => p is not null).Skip(1).Select(p => $"`{p!.Name}`").ToList();
            var seedNote = d.SeedAfter is null || late.Count == 0 ? "" : $" (`seed` before {string.Join(", ", late)}, so that existing positional calls keep their meaning)";
            lines.Add($"    /// `nn.{d.TypeName}`{(d.Note is null ? "" : ": " + d.Note.Replace("null", "None", StringComparison.Ordinal))}{seedNote}.");
            var parts = order.Select(p => p is null ? "?seed: int" : $"{(p.Required ? "" : "?")}{p.Name}: {FSharpType(p)}").ToList();
            var signature = parts.Count == 0 ? "unit -> Module" : string.Join(" * ", parts) + " -> Module";
            lines.Add($"    static member {d.TypeName}:");
            lines.AddRange(Wrap("        ", signature, " * "));
        }
        return GeneratedFiles.Lines(lines);
    }

    /// <summary>The active patterns (Patterns.fs): each matches exactly its PyTorch type name.</summary>
    public static string FSharpPatterns(IReadOnlyList<LayerDescriptor> kinds)
        => GeneratedFiles.Lines(kinds.Select(d => $"let (|{d.TypeName}|_|) (m: Module) = layer<{d.ModuleType.Name}> \"{d.TypeName}\" m"));

    /// <summary>The active patterns' signatures (Patterns.fsi).</summary>
    public static string FSharpPatternSignatures(IReadOnlyList<LayerDescriptor> kinds)
        => GeneratedFiles.Lines(kinds.SelectMany(d => new[] { $"/// Matches `{d.TypeName}`.", $"val (|{d.TypeName}|_|): Module -> {d.ModuleType.Name} option" }));

    /// <summary>The Python exporter's table of layers, <c>{type: [arguments the module keeps]}</c>: <see cref="LayerKinds.SchemaJson(IEnumerable{LayerDescriptor}, bool)"/>
    /// for the kinds found, indented.</summary>
    public static string PythonSchema(IReadOnlyList<LayerDescriptor> kinds)
        => LayerKinds.SchemaJson(kinds, indented: true).Replace("\r\n", "\n", StringComparison.Ordinal) + "\n";

    /// <summary>The model format's table of <c>args</c> by type: kinds with the same arguments share a row.</summary>
    public static string MarkdownArguments(IReadOnlyList<LayerDescriptor> kinds)
    {
        var lines = new List<string> { "| type | arguments (kind, PyTorch's default) |", "|---|---|" };
        foreach (var group in kinds.GroupBy(d => string.Join("; ", d.Parameters.Select(Describe))))
        {
            var names = string.Join(", ", group.Select(d => $"`{d.TypeName}`"));
            var first = group.First();
            var cells = first.Parameters.Count() == 0 ? "none" : string.Join(", ", first.Parameters.Select(Describe));
            lines.Add($"| {names} | {cells} |");
        }
        return GeneratedFiles.Lines(lines);
    }

    /// <summary>The kept arguments in PyTorch's constructor order.</summary>
    private static List<LayerParameter> Kept(LayerDescriptor d) => [.. d.ConstructorOrder.Select(n => d.Parameter(n)!)];

    /// <summary>The F# factory's parameters: the kept arguments with <c>seed</c> (null) last or after <see cref="LayerDescriptor.SeedAfter"/>.</summary>
    private static List<LayerParameter?> FSharpOrder(LayerDescriptor d)
    {
        var order = Kept(d).Cast<LayerParameter?>().ToList();
        if (!d.Seeded) return order;
        var after = d.SeedAfter is null ? order.Count : order.FindIndex(p => p!.Name == d.SeedAfter) + 1;
        order.Insert(after, null);
        return order;
    }

    private static string CSharpParameter(LayerParameter p)
    {
        var name = Camel(p.Name);
        if (p.Required)
            return p.Kind switch
            {
                K.Size or K.OptionalSize => $"IntOrTuple {name}",
                _ => $"{CSharpType(p.Kind)} {name}",
            };
        return p.Kind switch
        {
            K.Size => $"IntOrTuple? {name} = null",
            K.OptionalSize when p.Default is null => $"IntOrTuple? {name} = null",
            K.ConvPadding => $"ConvPadding? {name} = null",
            K.OptionalSize => throw Unsupported(p, "an optional size whose default is not None"),
            _ => $"{CSharpType(p.Kind)} {name} = {CSharpLiteral(p.Default)}",
        };
    }

    private static string CSharpType(K kind) => kind switch
    {
        K.Int => "int",
        K.OptionalInt => "int?",
        K.Bool => "bool",
        K.Double => "double",
        K.OptionalDouble => "double?",
        K.ConvPadding => "ConvPadding",
        K.PaddingMode => "string",
        _ => throw new NotSupportedException($"argument kind {kind} has no C# parameter type"),
    };

    /// <summary>The argument as <c>Nn.Layer</c> takes it: a null from <c>Given</c> leaves the descriptor's default.</summary>
    private static string CSharpArgument(LayerParameter p)
    {
        var name = Camel(p.Name);
        return p.Kind switch
        {
            K.Size or K.OptionalSize when p.Required => $"Arg(\"{p.Name}\", {name}.ToArray())",
            K.Size or K.OptionalSize => $"Given(\"{p.Name}\", {name}?.ToArray())",
            K.ConvPadding when !p.Required => $"Given(\"{p.Name}\", {name})",
            _ => $"Arg(\"{p.Name}\", {name})",
        };
    }

    private static string CSharpDefaultDoc(LayerParameter p) => p.Required ? "" : p.Kind switch
    {
        K.Size or K.OptionalSize or K.ConvPadding => $" (null: PyTorch's default, <c>{Python(p.Default)}</c>)",
        _ => $" (default <c>{Python(p.Default)}</c>)",
    };

    private static string FSharpArgument(LayerParameter p)
    {
        if (p.Required) return p.Name;
        return p.Kind switch
        {
            K.Size or K.OptionalSize => $"Nn.Opt {p.Name}",
            K.ConvPadding => $"Nn.Pad {p.Name}",
            K.OptionalDouble or K.OptionalInt => $"Nn.Maybe({p.Name}, {(p.Default is null ? "Nullable()" : "Nullable " + FSharpLiteral(p.Default))})",
            _ => $"defaultArg {p.Name} {FSharpLiteral(p.Default)}",
        };
    }

    private static string FSharpType(LayerParameter p) => p.Kind switch
    {
        K.Int => "int",
        K.OptionalInt => "int option",
        K.Bool => "bool",
        K.Double => "float",
        K.OptionalDouble => "float option",
        K.Size or K.OptionalSize => "IntOrTuple",
        K.ConvPadding => "ConvPadding",
        K.PaddingMode => "string",
        _ => throw Unsupported(p, "an argument kind without an F# type"),
    };

    private static string CSharpLiteral(object? v) => v switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        int i => i.ToString(CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        PaddingMode m => $"\"{m.ToString().ToLowerInvariant()}\"",
        _ => throw new NotSupportedException($"no C# literal for {v.GetType().Name} {v}"),
    };

    private static string FSharpLiteral(object? v) => v switch
    {
        int i => i < 0 ? $"({i})" : i.ToString(CultureInfo.InvariantCulture),
        double d => FloatLiteral(d),
        null => throw new NotSupportedException("no F# literal for None"),
        _ => CSharpLiteral(v),
    };

    private static string FloatLiteral(double d)
    {
        var s = d.ToString("R", CultureInfo.InvariantCulture).Replace("E", "e", StringComparison.Ordinal);
        return s.Contains('.') || s.Contains('e') ? s : s + ".0";
    }

    /// <summary>A value as PyTorch writes it.</summary>
    private static string Python(object? v) => v switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        int[] { Length: 1 } a => a[0].ToString(CultureInfo.InvariantCulture),
        int[] a => "(" + string.Join(", ", a) + ")",
        ConvPadding c => c.ToArgument() is string s ? $"'{s}'" : Python(((IEnumerable<int>)c.ToArgument()).ToArray()),
        PaddingMode m => $"'{m.ToString().ToLowerInvariant()}'",
        double d => FloatLiteral(d),
        _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
    };

    private static string Describe(LayerParameter p)
    {
        var kind = p.Kind switch
        {
            K.Int => "integer",
            K.OptionalInt => "integer or null",
            K.Bool => "bool",
            K.Double => "number",
            K.OptionalDouble => "number or null",
            K.Size => "an integer or a list",
            K.OptionalSize => "an integer, a list or null",
            K.ConvPadding => "a list, or `\"same\"`/`\"valid\"`",
            K.PaddingMode => "`zeros`, `reflect`, `replicate` or `circular`",
            _ => p.Kind.ToString(),
        };
        if (p.Unsupported is { } why) return $"`{p.Name}` (only `{Python(p.Default)}`: {why})";
        return p.Required ? $"`{p.Name}` ({kind})" : $"`{p.Name}` ({kind}, `{Python(p.Default)}`)";
    }

    private static string Sentence(string? note) => note is null ? "." : $": {note}.";

    /// <summary><c>in_channels</c> as <c>inChannels</c>.</summary>
    internal static string Camel(string snake)
    {
        var b = new StringBuilder();
        var upper = false;
        foreach (var c in snake)
        {
            if (c == '_') { upper = true; continue; }
            b.Append(upper ? char.ToUpperInvariant(c) : c);
            upper = false;
        }
        return b.ToString();
    }

    private static NotSupportedException Unsupported(LayerParameter p, string what)
        => new($"the generator has no form for {what} ('{p.Name}'); extend tools/layer-codegen/LayerCode.cs");

    /// <summary>One long line broken after its separators (outside quotes and nested brackets) so that no line passes
    /// <see cref="Width"/> where it can be helped; continuation lines are indented four more.</summary>
    private static List<string> Wrap(string indent, string line, string separator)
        => Fill(indent, SplitAfter(line, separator), "    ");

    /// <summary>Tokens joined by single spaces, a new line (indented by <paramref name="more"/> beyond <paramref name="indent"/>)
    /// whenever the next token would pass <see cref="Width"/>.</summary>
    private static List<string> Fill(string indent, IReadOnlyList<string> tokens, string more)
    {
        var lines = new List<string>();
        var current = new StringBuilder(indent);
        var empty = true;
        foreach (var t in tokens)
        {
            if (!empty && current.Length + 1 + t.Length > Width)
            {
                lines.Add(current.ToString());
                current.Clear().Append(indent).Append(more);
                empty = true;
            }
            if (!empty) current.Append(' ');
            current.Append(t);
            empty = false;
        }
        lines.Add(current.ToString());
        return lines;
    }

    /// <summary>Splits after each <paramref name="separator"/> outside double quotes and nested brackets; each piece keeps the
    /// separator's text without its spaces (<c>"a,"</c>, <c>"b *"</c>).</summary>
    private static List<string> SplitAfter(string line, string separator)
    {
        var pieces = new List<string>();
        var start = 0;
        var quoted = false;
        var depth = 0;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '"') quoted = !quoted;
            if (quoted) continue;
            if (c is '(' or '[') depth++;
            if (c is ')' or ']') depth--;
            if (depth <= 1 && string.CompareOrdinal(line, i, separator, 0, separator.Length) == 0)
            {
                pieces.Add(line[start..i] + separator.TrimEnd());
                start = i + separator.Length;
                i = start - 1;
            }
        }
        pieces.Add(line[start..]);
        return pieces;
    }
}
