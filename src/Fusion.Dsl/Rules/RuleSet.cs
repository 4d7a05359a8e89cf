using System.Collections;
using System.Collections.Immutable;

namespace Fusion.Dsl.Rules;

/// <summary>
/// An ordered, immutable collection of <see cref="FusionRule"/>s with at most one rule per pattern, looked up by a group's
/// sequence of module kinds. <see cref="Default"/> holds PyTorch's 16 default patterns in PyTorch's order;
/// <see cref="With"/> and <see cref="Override"/> add rules, a rule for an existing pattern replacing the old one in place
/// (PyTorch's <c>additional_fuser_method_mapping</c> winning over the defaults). A set also holds <see cref="GraphRules"/>,
/// rules over forward graphs that <see cref="GraphRewriter"/> applies where their patterns match (at most one per name).
/// </summary>
public sealed class RuleSet : IReadOnlyList<FusionRule>
{
    private readonly ImmutableArray<FusionRule> _rules;
    private readonly ImmutableDictionary<FusionPattern, FusionRule> _byPattern;

    private RuleSet(ImmutableArray<FusionRule> rules, ImmutableArray<GraphRule> graphRules)
    {
        _rules = rules;
        _byPattern = rules.ToImmutableDictionary(r => r.Pattern);
        GraphRules = graphRules;
    }

    /// <summary>No rules: every group is refused with <see cref="FusionErrorKind.NoRule"/>.</summary>
    public static RuleSet Empty { get; } = new([], []);

    /// <summary>The rules over forward graphs, in the order <see cref="GraphRewriter"/> prefers them; none in
    /// <see cref="Default"/>.</summary>
    public ImmutableArray<GraphRule> GraphRules { get; }

    /// <summary>
    /// PyTorch's default mapping (<c>_DEFAULT_OP_LIST_TO_FUSER_METHOD</c>), in its order: (ConvNd, BatchNormNd),
    /// (ConvNd, BatchNormNd, ReLU) for N = 1, 2, 3; (ConvNd, ReLU); (Linear, BatchNorm1d); (Linear, ReLU);
    /// (BatchNorm2d|3d, ReLU); (ConvTransposeNd, BatchNormNd).
    /// </summary>
    public static RuleSet Default { get; } = Create(DefaultRules.Build());

    /// <summary>
    /// <see cref="Default"/> (unchanged, first) plus patterns PyTorch lacks, fused into this project's own <c>fusion.dsl</c> kinds:
    /// (ConvNd, ReLU6 | Hardswish | SiLU), (ConvNd, BatchNormNd, ReLU6 | Hardswish | SiLU), (ConvTransposeNd, ReLU),
    /// (ConvTransposeNd, BatchNormNd, ReLU), (BatchNormNd, ConvNd) for a convolution that does not zero-pad, for N = 1, 2, 3;
    /// (Linear, ReLU6), (Linear, BatchNorm1d, ReLU), (BatchNorm1d, ReLU), (BatchNorm1d, Linear); and the graph rules
    /// <c>conv{N}d_add_relu</c> and <c>conv{N}d_add</c>, which fuse a residual add (and the ReLU after it) into the convolution
    /// before it as <c>ConvAddReLU{N}d</c> / <c>ConvAdd{N}d</c>, a module called with the input and the residual. A model fused
    /// with them is no longer loadable by PyTorch's <c>torch.ao.nn.intrinsic</c>.
    /// </summary>
    public static RuleSet Extended { get; } = Default.Override(ExtendedRules.Build()).OverrideGraph(ExtendedRules.BuildGraph());

    /// <summary>
    /// Only graph rules: <c>conv_mul_constant</c> and <c>conv_add_constant</c>, which fold a per-channel constant multiplied
    /// into or added to a convolution's output into its weights and bias (see <see cref="GraphConstantFolding"/>).
    /// </summary>
    public static RuleSet ConstantFolding { get; } = Empty.OverrideGraph(ConstantFoldingRules.Build());

    /// <summary>
    /// The kind a module has for rule matching: its type name, except that a user-defined module (namespace
    /// <c>user</c>) whose class name is one the built-in rules fuse (a user class called <c>BatchNorm2d</c>) gets
    /// <c>user:</c> before it, since it is not that layer: no built-in rule then matches it by name, while a custom rule may
    /// still name it so.
    /// </summary>
    public static string KindOf(Algebra.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return module.Namespace == Algebra.Namespaces.User && BuiltInKinds.Contains(module.TypeName) ? "user:" + module.TypeName : module.TypeName;
    }

    private static readonly HashSet<string> BuiltInKinds = Extended.SelectMany(r => r.Pattern.Kinds).ToHashSet(StringComparer.Ordinal);

    /// <summary>Creates a rule set from rules in order.</summary>
    /// <exception cref="ArgumentException">A rule is null or two rules have the same pattern.</exception>
    public static RuleSet Create(IEnumerable<FusionRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var list = rules.ToImmutableArray();
        for (var i = 0; i < list.Length; i++)
        {
            if (list[i] is null) throw new ArgumentException($"rule {i} is null");
            for (var j = 0; j < i; j++)
                if (list[j].Pattern.Equals(list[i].Pattern))
                    throw new ArgumentException(
                        $"rules '{list[j].Name}' and '{list[i].Name}' both match {list[i].Pattern}; use With/Override to replace a rule");
        }
        return new RuleSet(list, []);
    }

    /// <summary>This set with <paramref name="rule"/>: it replaces, in place, a rule with the same pattern, or is added last.</summary>
    public RuleSet With(FusionRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        for (var i = 0; i < _rules.Length; i++)
            if (_rules[i].Pattern.Equals(rule.Pattern))
                return ReferenceEquals(_rules[i], rule) ? this : new RuleSet(_rules.SetItem(i, rule), GraphRules);
        return new RuleSet(_rules.Add(rule), GraphRules);
    }

    /// <summary>This set with the graph rule <paramref name="rule"/>: it replaces, in place, a graph rule of the same name, or
    /// is added last.</summary>
    public RuleSet WithGraph(GraphRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        for (var i = 0; i < GraphRules.Length; i++)
            if (GraphRules[i].Name == rule.Name)
                return ReferenceEquals(GraphRules[i], rule) ? this : new RuleSet(_rules, GraphRules.SetItem(i, rule));
        return new RuleSet(_rules, GraphRules.Add(rule));
    }

    /// <summary>This set with every graph rule of <paramref name="rules"/> applied by <see cref="WithGraph"/> in order;
    /// the same instance when there are none.</summary>
    public RuleSet OverrideGraph(IEnumerable<GraphRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var result = this;
        foreach (var r in rules) result = result.WithGraph(r);
        return result;
    }

    /// <summary>This set with every rule of <paramref name="rules"/> applied by <see cref="With"/> in order (later ones win);
    /// the same instance when there are none.</summary>
    public RuleSet Override(IEnumerable<FusionRule> rules)
    {
        ArgumentNullException.ThrowIfNull(rules);
        var result = this;
        foreach (var r in rules) result = result.With(r);
        return result;
    }

    /// <summary>The rule whose pattern is exactly <paramref name="kinds"/>, or null.</summary>
    public FusionRule? Find(IReadOnlyList<string> kinds)
    {
        ArgumentNullException.ThrowIfNull(kinds);
        if (kinds.Count == 0) return null;
        return _byPattern.TryGetValue(FusionPattern.Of(kinds), out var r) ? r : null;
    }

    /// <summary>The rules whose pattern starts with <paramref name="kind"/>, in order (used to suggest alternatives).</summary>
    public IEnumerable<FusionRule> StartingWith(string kind) => _rules.Where(r => r.Pattern.Kinds[0] == kind);

    /// <inheritdoc />
    public int Count => _rules.Length;

    /// <inheritdoc />
    public FusionRule this[int index] => _rules[index];

    /// <inheritdoc />
    public IEnumerator<FusionRule> GetEnumerator() => ((IEnumerable<FusionRule>)_rules).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
