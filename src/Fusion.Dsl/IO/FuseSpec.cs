using System.Collections.Immutable;

namespace Fusion.Dsl.IO;

/// <summary>The shape of a <c>modules_to_fuse</c> argument as given.</summary>
public enum FuseSpecKind
{
    /// <summary><c>[]</c>: nothing at all.</summary>
    Empty,
    /// <summary><c>["conv1", "bn1", "relu1"]</c>: one group given as a flat list of names.</summary>
    SingleList,
    /// <summary><c>[["conv1", "bn1"], ["conv2", "relu2"]]</c>: a list of groups.</summary>
    ListOfLists,
    /// <summary>Names and lists side by side (<c>["conv1", ["bn1"]]</c>): ambiguous, which fusion must refuse.</summary>
    Mixed,
}

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

/// <summary>
/// PyTorch's <c>modules_to_fuse</c> exactly as given: a flat list of names (one group), a list of lists (several groups),
/// or a malformed mix or empty list, kept as is so that the fusion code can refuse it with a precise message instead
/// of this reader guessing. <see cref="Entries"/> is the raw structure; <see cref="Groups"/> the groups it denotes.
/// </summary>
public sealed class FuseSpec : IEquatable<FuseSpec>
{
    /// <summary>Builds a spec from raw top-level entries.</summary>
    public FuseSpec(IEnumerable<FuseEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        Entries = entries.ToImmutableArray();
        if (Entries.Any(e => e is null)) throw new ArgumentException("a fuse entry is null");
        var names = Entries.Count(e => !e.IsGroup);
        Kind = Entries.Length == 0 ? FuseSpecKind.Empty
            : names == Entries.Length ? FuseSpecKind.SingleList
            : names == 0 ? FuseSpecKind.ListOfLists
            : FuseSpecKind.Mixed;
    }

    /// <summary>One group given as a flat list: <c>["conv1", "bn1", "relu1"]</c>.</summary>
    public static FuseSpec Single(params string[] names) => new(names.Select(FuseEntry.OfName));

    /// <summary>Several groups: <c>[["conv1", "bn1"], ["conv2", "relu2"]]</c>.</summary>
    public static FuseSpec OfGroups(IEnumerable<IEnumerable<string>> groups) => new(groups.Select(FuseEntry.OfGroup));

    /// <summary>The top-level entries as given.</summary>
    public ImmutableArray<FuseEntry> Entries { get; }

    /// <summary>Which shape the list has.</summary>
    public FuseSpecKind Kind { get; }

    /// <summary>True when the list was a flat list of names (PyTorch wraps it into one group).</summary>
    public bool IsSingleList => Kind == FuseSpecKind.SingleList;

    /// <summary>
    /// The groups: the one group of a flat list, the lists of a list of lists, none for an empty list. For a
    /// <see cref="FuseSpecKind.Mixed"/> list each entry is taken as its own group (a bare name as a group of one), so that a
    /// caller can still report every entry; fusion itself must refuse a mixed list (see <see cref="Kind"/>).
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>> Groups => Kind switch
    {
        FuseSpecKind.Empty => [],
        FuseSpecKind.SingleList => [Entries.Select(e => e.Name!).ToImmutableArray()],
        _ => Entries.Select(e => (IReadOnlyList<string>)(e.IsGroup ? e.Group : [e.Name!])).ToList(),
    };

    /// <summary>The list exactly as PyTorch received it, for <c>Fuser.FuseModulesRaw</c>: names stay strings, lists become
    /// string arrays, so a mixed or empty list reaches fusion as given and is refused there.</summary>
    public object ToModulesToFuse() => Entries.Select(e => e.IsGroup ? (object)e.Group.ToArray() : e.Name!).ToList();

    /// <inheritdoc />
    public bool Equals(FuseSpec? other) => other is not null && other.Entries.SequenceEqual(Entries);
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as FuseSpec);
    /// <inheritdoc />
    public override int GetHashCode() => Entries.Length;
    /// <summary>The list as Python would print it.</summary>
    public override string ToString() => "[" + string.Join(", ", Entries) + "]";
}
