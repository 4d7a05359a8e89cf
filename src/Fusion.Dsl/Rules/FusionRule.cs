using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Rules;

/// <summary>
/// A rewrite rule as data: <em>where</em> it applies (<see cref="Pattern"/>, the kinds of a group of modules, and
/// <see cref="Guards"/>, named preconditions) kept apart from <em>what</em> it computes (<see cref="Applier"/>, a pure function
/// from the matched modules to the one module that replaces the group's first position; the other positions become
/// <see cref="Layers.Identity"/>). PyTorch's entry <c>(nn.Conv2d, nn.BatchNorm2d): fuse_conv_bn</c> is one rule.
/// </summary>
public sealed class FusionRule
{
    private FusionRule(string name, FusionPattern pattern, ImmutableArray<FusionGuard> guards, Func<bool, IReadOnlyList<Module>, Module> applier)
    {
        Name = name; Pattern = pattern; Guards = guards; Applier = applier;
    }

    /// <summary>The rule's name, reported in errors (<c>conv2d_bn2d</c>).</summary>
    public string Name { get; }

    /// <summary>The module kinds the rule matches, in group order.</summary>
    public FusionPattern Pattern { get; }

    /// <summary>Preconditions checked in order before <see cref="Applier"/> runs; the first that fails is reported by name.</summary>
    public ImmutableArray<FusionGuard> Guards { get; }

    /// <summary>
    /// The rewrite: <c>(isQat, modules) → fused module</c>. It receives the matched modules without their hooks (the engine moves
    /// the hooks) and must not depend on anything else; it runs only when every guard holds.
    /// </summary>
    public Func<bool, IReadOnlyList<Module>, Module> Applier { get; }

    /// <summary>Creates a rule.</summary>
    /// <exception cref="ArgumentException">The name is empty, or two guards share a name.</exception>
    public static FusionRule Create(string name, FusionPattern pattern, Func<bool, IReadOnlyList<Module>, Module> applier, params FusionGuard[] guards)
        => Create(name, pattern, applier, (IEnumerable<FusionGuard>)guards);

    /// <summary>Creates a rule.</summary>
    /// <exception cref="ArgumentException">The name is empty, or two guards share a name.</exception>
    public static FusionRule Create(string name, FusionPattern pattern, Func<bool, IReadOnlyList<Module>, Module> applier, IEnumerable<FusionGuard> guards)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a fusion rule needs a name");
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(applier);
        ArgumentNullException.ThrowIfNull(guards);
        var g = guards.ToImmutableArray();
        for (var i = 0; i < g.Length; i++)
        {
            if (g[i] is null) throw new ArgumentException($"fusion rule '{name}': guard {i} is null");
            for (var j = 0; j < i; j++)
                if (g[j].Name == g[i].Name) throw new ArgumentException($"fusion rule '{name}': two guards are named '{g[i].Name}'");
        }
        return new FusionRule(name, pattern, g, applier);
    }

    /// <summary>The first guard that does not hold for <paramref name="match"/> and what it says, or null when all hold.</summary>
    public (FusionGuard Guard, string Problem)? FirstViolation(FusionMatch match)
    {
        ArgumentNullException.ThrowIfNull(match);
        foreach (var g in Guards)
            if (g.Violation(match) is { } problem) return (g, problem);
        return null;
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {Pattern}";
}
