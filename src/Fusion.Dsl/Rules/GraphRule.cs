using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Rules;

/// <summary>
/// A rewrite rule over forward graphs, as data: <em>where</em> it applies (<see cref="Pattern"/>, a tree of graph nodes that may
/// name several inputs, and named <see cref="Guards"/>) apart from <em>what</em> it computes (<see cref="Applier"/>, a pure
/// function from the match to the module that replaces the module part <see cref="Replaces"/>), and what stands in the graph
/// afterwards (<see cref="Result"/>). Where <see cref="FusionRule"/> fuses a chain of modules named by the caller, a graph
/// rule finds its sites itself (<see cref="GraphRewriter"/>): <c>conv(x) + residual</c> then ReLU, or a per-channel constant
/// multiplied into a convolution's output.
/// </summary>
public sealed class GraphRule
{
    private GraphRule(string name, GraphPattern pattern, string replaces, GraphResult result, Func<GraphMatch, Module> applier,
        ImmutableArray<GraphGuard> guards)
    {
        Name = name; Pattern = pattern; Replaces = replaces; Result = result; Applier = applier; Guards = guards;
    }

    /// <summary>The rule's name (<c>conv2d_add_relu</c>).</summary>
    public string Name { get; }

    /// <summary>Where the rule applies.</summary>
    public GraphPattern Pattern { get; }

    /// <summary>The module part whose module <see cref="Applier"/> replaces (at the same path).</summary>
    public string Replaces { get; }

    /// <summary>What stands in the graph where the root node was.</summary>
    public GraphResult Result { get; }

    /// <summary>The rewrite: the match to the module that replaces <see cref="Replaces"/>. Runs only when every check holds.</summary>
    public Func<GraphMatch, Module> Applier { get; }

    /// <summary>Preconditions checked in order after the rewriter's own safety checks.</summary>
    public ImmutableArray<GraphGuard> Guards { get; }

    /// <summary>Creates a rule.</summary>
    /// <exception cref="ArgumentException">The name is empty; the pattern spans fewer than two nodes (a rewrite must remove
    /// nodes, so that rewriting ends); <paramref name="replaces"/> is not a module part of the pattern; an argument of
    /// <paramref name="result"/> is not one of its input or constant parts; or two guards share a name.</exception>
    public static GraphRule Create(string name, GraphPattern pattern, string replaces, GraphResult result, Func<GraphMatch, Module> applier,
        params GraphGuard[] guards)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a graph rule needs a name");
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(applier);
        ArgumentNullException.ThrowIfNull(guards);
        if (pattern.MinimumNodes < 2)
            throw new ArgumentException($"graph rule '{name}': the pattern {pattern} must span at least two graph nodes (a rewrite removes nodes, which makes rewriting end)");
        if (!Parts(pattern).Any(p => p.Kind == GraphPatternKind.Module && p.Name == replaces))
            throw new ArgumentException($"graph rule '{name}': '{replaces}' is not a module part of {pattern}");
        var leaves = Parts(pattern).Where(p => p.Kind is GraphPatternKind.Input or GraphPatternKind.Constant).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var a in result.Arguments ?? [])
            if (!leaves.Contains(a)) throw new ArgumentException($"graph rule '{name}': the result's argument '{a}' is not an input or constant of {pattern}");
        for (var i = 0; i < guards.Length; i++)
        {
            if (guards[i] is null) throw new ArgumentException($"graph rule '{name}': guard {i} is null");
            for (var j = 0; j < i; j++)
                if (guards[j].Name == guards[i].Name) throw new ArgumentException($"graph rule '{name}': two guards are named '{guards[i].Name}'");
        }
        return new GraphRule(name, pattern, replaces, result, applier, [.. guards]);
    }

    /// <summary>The first guard that does not hold for <paramref name="match"/> and what it says, or null when all hold.</summary>
    public (GraphGuard Guard, string Problem)? FirstViolation(GraphMatch match)
    {
        ArgumentNullException.ThrowIfNull(match);
        foreach (var g in Guards)
            if (g.Violation(match) is { } problem) return (g, problem);
        return null;
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {Pattern} => {Result}";

    private static IEnumerable<GraphPattern> Parts(GraphPattern p) => p.Parts.SelectMany(Parts).Prepend(p);
}
