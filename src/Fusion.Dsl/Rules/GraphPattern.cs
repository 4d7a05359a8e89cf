using System.Collections.Immutable;

namespace Fusion.Dsl.Rules;

/// <summary>The kinds of <see cref="GraphPattern"/>.</summary>
public enum GraphPatternKind
{
    /// <summary>A <c>call_module</c> node of a module of given kinds, its inputs matched in order.</summary>
    Module,
    /// <summary>A <c>call_function</c> or <c>call_method</c> node of an operation of <see cref="Graphs.GraphOps"/>.</summary>
    Operation,
    /// <summary>Any tensor value computed outside the match (a graph node's output or the graph's input).</summary>
    Input,
    /// <summary>A number written in the graph, or a <c>get_attr</c> node.</summary>
    Constant,
    /// <summary>The first of several alternatives that matches.</summary>
    Either,
}

/// <summary>
/// Where a <see cref="GraphRule"/> applies: a tree of node patterns read from the value the rule replaces back to the values
/// it consumes, like an e-graph pattern in egg (<c>(relu (add (Conv2d ?x) ?residual))</c>). A pattern can name several inputs,
/// so multi-input fusions are expressed as data. Each named part is bound in the <see cref="GraphMatch"/> a guard and an
/// applier read. A call of an <see cref="Layers.Identity"/> module without hooks is looked through wherever a node pattern
/// expects a value (it computes nothing; a folded BatchNorm leaves one between a convolution and what reads it), and is removed
/// with the match.
/// </summary>
public sealed class GraphPattern
{
    private GraphPattern(GraphPatternKind kind, string? name, ImmutableArray<string> kinds, string? operation, bool commutative,
        ImmutableArray<GraphPattern> parts)
    {
        Kind = kind; Name = name; Kinds = kinds; Operation = operation; Commutative = commutative; Parts = parts;
    }

    /// <summary>What this part matches.</summary>
    public GraphPatternKind Kind { get; }

    /// <summary>The name the matched node or value is bound to (null for <see cref="GraphPatternKind.Either"/>).</summary>
    public string? Name { get; }

    /// <summary>For <see cref="GraphPatternKind.Module"/>: the module kinds (<see cref="RuleSet.KindOf"/>) that match.</summary>
    public ImmutableArray<string> Kinds { get; }

    /// <summary>For <see cref="GraphPatternKind.Operation"/>: the operation's name in <see cref="Graphs.GraphOps"/> (<c>add</c>).</summary>
    public string? Operation { get; }

    /// <summary>For a two-operand <see cref="GraphPatternKind.Operation"/>: whether the operands may come in either order.</summary>
    public bool Commutative { get; }

    /// <summary>The operand patterns (a module's positional inputs, an operation's leading parameters), or the alternatives
    /// of <see cref="GraphPatternKind.Either"/>.</summary>
    public ImmutableArray<GraphPattern> Parts { get; }

    /// <summary>A <c>call_module</c> node calling a module whose kind is one of <paramref name="kinds"/> with exactly
    /// <paramref name="inputs"/> as its positional arguments (no keywords).</summary>
    /// <exception cref="ArgumentException">The name is blank, no kind is given, or an input is null.</exception>
    public static GraphPattern Module(string name, IEnumerable<string> kinds, params GraphPattern[] inputs)
    {
        var k = (kinds ?? throw new ArgumentNullException(nameof(kinds))).ToImmutableArray();
        if (k.Length == 0 || k.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException($"module pattern '{name}' needs module kinds");
        return new(GraphPatternKind.Module, CheckName(name), k, null, false, CheckParts(name, inputs));
    }

    /// <summary>A <c>call_function</c> or <c>call_method</c> node of <paramref name="operation"/> whose leading parameters
    /// (<c>input</c>/<c>self</c>, <c>other</c>, ...) match <paramref name="operands"/>; its other parameters must be left
    /// unset, except the operation's in-place flag.</summary>
    /// <exception cref="ArgumentException">The name or operation is blank, an operand is null, or a commutative pattern does not
    /// have two operands.</exception>
    public static GraphPattern Op(string name, string operation, bool commutative, params GraphPattern[] operands)
    {
        if (string.IsNullOrWhiteSpace(operation)) throw new ArgumentException($"operation pattern '{name}' needs an operation name");
        var parts = CheckParts(name, operands);
        if (parts.Length == 0) throw new ArgumentException($"operation pattern '{name}' needs at least one operand");
        if (commutative && parts.Length != 2) throw new ArgumentException($"operation pattern '{name}': only two operands can commute");
        return new(GraphPatternKind.Operation, CheckName(name), [], operation, commutative, parts);
    }

    /// <summary>Any tensor value that the match does not compute: the output of another node or the graph's input.</summary>
    public static GraphPattern Input(string name) => new(GraphPatternKind.Input, CheckName(name), [], null, false, []);

    /// <summary>A number written in the graph, or the tensor a <c>get_attr</c> node reads.</summary>
    public static GraphPattern Constant(string name) => new(GraphPatternKind.Constant, CheckName(name), [], null, false, []);

    /// <summary>The first alternative that matches (each may bind the same names).</summary>
    /// <exception cref="ArgumentException">Fewer than two alternatives, or one is null.</exception>
    public static GraphPattern Either(params GraphPattern[] alternatives)
    {
        var parts = CheckParts("either", alternatives);
        if (parts.Length < 2) throw new ArgumentException("an either pattern needs at least two alternatives");
        return new(GraphPatternKind.Either, null, [], null, false, parts);
    }

    /// <summary>The fewest graph nodes (module calls and operations) any match of this pattern spans.</summary>
    public int MinimumNodes => Kind switch
    {
        GraphPatternKind.Module or GraphPatternKind.Operation => 1 + Parts.Sum(p => p.MinimumNodes),
        GraphPatternKind.Either => Parts.Min(p => p.MinimumNodes),
        _ => 0,
    };

    /// <summary>Every name bound by this pattern (an Either's alternatives counted once).</summary>
    public IEnumerable<string> Names => (Name is null ? [] : new[] { Name }).Concat(Parts.SelectMany(p => p.Names)).Distinct(StringComparer.Ordinal);

    /// <summary>The pattern as an s-expression: <c>(relu (add (Conv2d ?x) ?residual))</c>.</summary>
    public override string ToString() => Kind switch
    {
        GraphPatternKind.Module => $"({string.Join("|", Kinds)}{string.Concat(Parts.Select(p => " " + p))})",
        GraphPatternKind.Operation => $"({Operation}{string.Concat(Parts.Select(p => " " + p))})",
        GraphPatternKind.Input => "?" + Name,
        GraphPatternKind.Constant => "#" + Name,
        _ => "(either" + string.Concat(Parts.Select(p => " " + p)) + ")",
    };

    private static string CheckName(string name)
        => string.IsNullOrWhiteSpace(name) ? throw new ArgumentException("a graph pattern part needs a name to bind") : name;

    private static ImmutableArray<GraphPattern> CheckParts(string name, GraphPattern[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Any(p => p is null)) throw new ArgumentException($"graph pattern '{name}' has a null part");
        return [.. parts];
    }
}
