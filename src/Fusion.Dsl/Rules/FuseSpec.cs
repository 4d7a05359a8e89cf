using System.Collections;
using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Fusion.Dsl.Rules;

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

    /// <summary>
    /// The groups fusion takes, as PyTorch's <c>_fuse_modules</c> reads the list: a flat list of names is one group, a list of
    /// lists one group each. Refuses what PyTorch would misread or fail on.
    /// </summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/>: the list is empty, mixes names and lists,
    /// or holds an empty group.</exception>
    public IReadOnlyList<IReadOnlyList<string>> FusionGroups()
    {
        switch (Kind)
        {
            case FuseSpecKind.Empty:
                throw Invalid(-1, "the list is empty, so there is nothing to fuse", Shape);
            case FuseSpecKind.Mixed:
                var name = Entries.Select((e, i) => (e, i)).First(t => !t.e.IsGroup);
                var list = Entries.Select((e, i) => (e, i)).First(t => t.e.IsGroup);
                throw Invalid(-1, $"the list mixes names and lists: item {name.i} is the name '{name.e.Name}' but item {list.i} is a list", Shape);
        }
        var groups = Groups;
        for (var g = 0; g < groups.Count; g++)
            if (groups[g].Count == 0)
                throw Invalid(g, $"group {g} is empty", "give at least one dotted module name per group, or drop the empty group");
        return groups;
    }

    /// <summary>
    /// Reads <c>modules_to_fuse</c> held as plain objects: strings, non-string sequences, or <see cref="JsonElement"/> /
    /// <see cref="JsonNode"/> values holding strings and arrays (what a caller that passes PyTorch's argument through has).
    /// </summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/>: not a list, or an item that is neither a
    /// name nor a list of names.</exception>
    public static FuseSpec FromObject(object? modulesToFuse)
    {
        var items = AsList(modulesToFuse) ?? throw Invalid(-1, $"expected a list, got {Describe(modulesToFuse)}", Shape);
        var entries = new List<FuseEntry>(items.Count);
        for (var g = 0; g < items.Count; g++)
        {
            if (items[g] is string name) { entries.Add(FuseEntry.OfName(name)); continue; }
            var inner = AsList(items[g]) ?? throw Invalid(g, $"item {g} is {Describe(items[g])}, neither a name nor a list of names", Shape);
            for (var k = 0; k < inner.Count; k++)
                if (inner[k] is not string)
                    throw Invalid(g, $"entry {k} of group {g} is {Describe(inner[k])}, not a name", "groups hold dotted module names only");
            entries.Add(FuseEntry.OfGroup(inner.Cast<string>()));
        }
        return new FuseSpec(entries);
    }

    private const string Shape = "give either one list of dotted names (a single group) or a list of such lists";

    private static FusionException Invalid(int group, string problem, string remedy)
        => FusionException.Create(FusionErrorKind.InvalidGroups, group, [], [], problem, remedy);

    /// <summary>JSON values become strings and lists so both plain and JSON arguments read alike.</summary>
    private static object? Normalize(object? value) => value switch
    {
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString(),
        JsonElement { ValueKind: JsonValueKind.Array } e => e.EnumerateArray().Select(x => Normalize(x)).ToList(),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonArray a => a.Select(x => Normalize(x)).ToList(),
        _ => value,
    };

    private static List<object?>? AsList(object? value)
        => Normalize(value) switch
        {
            string => null,
            IEnumerable e => e.Cast<object?>().Select(Normalize).ToList(),
            _ => null,
        };

    private static string Shorten(string? s) => s is null ? "null" : s.Length <= 40 ? s : s[..40] + "...";

    private static string Describe(object? value) => Normalize(value) switch
    {
        null => "null",
        string s => $"the name '{s}'",
        IEnumerable => "a list",
        JsonElement e => $"a JSON {e.ValueKind.ToString().ToLowerInvariant()}",
        var v => v.GetType().IsPrimitive ? $"the number {v}" : $"the value {Shorten(v.ToString())}",
    };

    /// <inheritdoc />
    public bool Equals(FuseSpec? other) => other is not null && other.Entries.SequenceEqual(Entries);
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as FuseSpec);
    /// <inheritdoc />
    public override int GetHashCode() => Entries.Length;
    /// <summary>The list as Python would print it.</summary>
    public override string ToString() => "[" + string.Join(", ", Entries) + "]";
}
