using System.Collections.Immutable;

namespace Fusion.Dsl.Rules;

/// <summary>One top-level entry of a <c>modules_to_fuse</c> list: a name, or a list of names.</summary>
public sealed class FuseEntry : IEquatable<FuseEntry>
{
    private FuseEntry(string? name, ImmutableArray<string> group) { Name = name; Group = group; }

    /// <summary>A bare dotted name.</summary>
    public static FuseEntry OfName(string name) => new(name ?? throw new ArgumentNullException(nameof(name)), ImmutableArray<string>.Empty);

    /// <summary>A list of dotted names (possibly empty).</summary>
    public static FuseEntry OfGroup(IEnumerable<string> names) => new(null, names.ToImmutableArray());

    /// <summary>The name, when this entry is a bare name; otherwise null.</summary>
    public string? Name { get; }

    /// <summary>The names of a list entry; empty for a bare name.</summary>
    public ImmutableArray<string> Group { get; }

    /// <summary>Whether the entry is a list (as opposed to a bare name).</summary>
    public bool IsGroup => Name is null;

    /// <inheritdoc />
    public bool Equals(FuseEntry? other) => other is not null && other.Name == Name && other.Group.SequenceEqual(Group);
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as FuseEntry);
    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Name, Group.Length);
    /// <inheritdoc />
    public override string ToString() => IsGroup ? "[" + string.Join(", ", Group.Select(n => $"'{n}'")) + "]" : $"'{Name}'";
}
