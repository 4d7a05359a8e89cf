using System.Collections.Immutable;

namespace Fusion.Dsl.Rules;

/// <summary>
/// The sequence of module kinds a rule matches, like a key of PyTorch's fuser method mapping
/// (<c>(nn.Conv2d, nn.BatchNorm2d)</c>). Kinds are exact type names (<see cref="Algebra.Module.TypeName"/>): as in PyTorch,
/// a subclass or a different dimension does not match. Equality is by value, so patterns can key dictionaries.
/// </summary>
public sealed class FusionPattern : IEquatable<FusionPattern>
{
    private FusionPattern(ImmutableArray<string> kinds) => Kinds = kinds;

    /// <summary>The module type names, in group order.</summary>
    public ImmutableArray<string> Kinds { get; }

    /// <summary>Number of modules the pattern spans.</summary>
    public int Length => Kinds.Length;

    /// <summary>Creates a pattern from type names.</summary>
    /// <exception cref="ArgumentException">No kinds are given, or one is null, empty or blank.</exception>
    public static FusionPattern Of(params string[] kinds) => Of((IEnumerable<string>)kinds);

    /// <summary>Creates a pattern from type names.</summary>
    /// <exception cref="ArgumentException">No kinds are given, or one is null, empty or blank.</exception>
    public static FusionPattern Of(IEnumerable<string> kinds)
    {
        ArgumentNullException.ThrowIfNull(kinds);
        var k = kinds.ToImmutableArray();
        if (k.Length == 0) throw new ArgumentException("a fusion pattern needs at least one module kind");
        for (var i = 0; i < k.Length; i++)
            if (string.IsNullOrWhiteSpace(k[i]))
                throw new ArgumentException($"fusion pattern entry {i} is empty; give a module type name such as 'Conv2d'");
        return new FusionPattern(k);
    }

    /// <summary>Whether a group with these module type names matches the pattern exactly.</summary>
    public bool Matches(IReadOnlyList<string> kinds) => kinds.Count == Kinds.Length && Kinds.SequenceEqual(kinds, StringComparer.Ordinal);

    /// <summary>Same kinds in the same order.</summary>
    public bool Equals(FusionPattern? other) => other is not null && Kinds.SequenceEqual(other.Kinds, StringComparer.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as FusionPattern);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var k in Kinds) h.Add(k, StringComparer.Ordinal);
        return h.ToHashCode();
    }

    /// <summary>The kinds as a tuple: <c>(Conv2d, BatchNorm2d)</c>.</summary>
    public override string ToString() => "(" + string.Join(", ", Kinds) + ")";
}
