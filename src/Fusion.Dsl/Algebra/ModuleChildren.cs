using System.Collections;
using System.Collections.Immutable;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// The ordered, named children of a module. Immutable; <see cref="SetItem"/> returns the same
/// instance when the replacement is the module already there, so identity rewrites allocate nothing.
/// Equality is structural (names in order, children equal), never by reference of the backing array.
/// </summary>
public sealed class ModuleChildren : IReadOnlyList<NamedModule>, IEquatable<ModuleChildren>
{
    private readonly ImmutableArray<NamedModule> _items;

    /// <summary>The empty list, shared by every leaf module.</summary>
    public static ModuleChildren Empty { get; } = new(ImmutableArray<NamedModule>.Empty);

    private ModuleChildren(ImmutableArray<NamedModule> items) => _items = items;

    /// <summary>Builds a list; names must be non-empty, free of dots and unique.</summary>
    /// <exception cref="ArgumentException">A name is empty, contains a dot, or repeats.</exception>
    public static ModuleChildren Create(IEnumerable<NamedModule> children)
    {
        var items = children.ToImmutableArray();
        if (items.IsEmpty) return Empty;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in items)
        {
            if (string.IsNullOrEmpty(c.Name) || c.Name.Contains('.'))
                throw new ArgumentException($"child name '{c.Name}' must be non-empty and contain no '.'");
            if (c.Module is null) throw new ArgumentException($"child '{c.Name}' is null");
            if (!seen.Add(c.Name)) throw new ArgumentException($"child name '{c.Name}' appears twice");
        }
        return new(items);
    }

    /// <summary>Builds a list from (name, module) pairs.</summary>
    public static ModuleChildren Create(params (string Name, Module Module)[] children)
        => Create(children.Select(c => new NamedModule(c.Name, c.Module)));

    /// <summary>Children named <c>"0"</c>, <c>"1"</c>, ... in order, as in a Sequential.</summary>
    public static ModuleChildren Numbered(IEnumerable<Module> modules)
        => Create(modules.Select((m, i) => new NamedModule(i.ToString(System.Globalization.CultureInfo.InvariantCulture), m)));

    /// <inheritdoc />
    public int Count => _items.Length;

    /// <inheritdoc />
    public NamedModule this[int index] => _items[index];

    /// <summary>The child called <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No child has that name.</exception>
    public Module this[string name] => TryGet(name, out var m) ? m : throw new KeyNotFoundException($"no child '{name}'; children: {string.Join(", ", Names)}");

    /// <summary>The names in order.</summary>
    public IEnumerable<string> Names => _items.Select(c => c.Name);

    /// <summary>Index of the child called <paramref name="name"/>, or -1.</summary>
    public int IndexOf(string name) => IndexOf(name.AsSpan());

    /// <summary><see cref="IndexOf(string)"/> for a name given as characters (a segment of a dotted path), without a string.</summary>
    internal int IndexOf(ReadOnlySpan<char> name)
    {
        if (_items.Length <= LinearLookupCount)
        {
            for (var i = 0; i < _items.Length; i++) if (name.SequenceEqual(_items[i].Name)) return i;
            return -1;
        }
        return Index.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name, out var found) ? found : -1;
    }

    /// <summary>Up to this many children a scan is as fast as a dictionary and allocates nothing.</summary>
    private const int LinearLookupCount = 16;

    private Dictionary<string, int>? _index;

    // Built on the first lookup in a long list (an imported graph may call 100,000 children by name); the list is
    // immutable, so a race at worst builds the same index twice.
    private Dictionary<string, int> Index
        => _index ??= _items.Select((c, i) => (c.Name, i)).ToDictionary(e => e.Name, e => e.i, StringComparer.Ordinal);

    /// <summary>Looks a child up by name.</summary>
    public bool TryGet(string name, out Module module)
    {
        var i = IndexOf(name);
        module = i >= 0 ? _items[i].Module : null!;
        return i >= 0;
    }

    /// <summary>Replaces the child called <paramref name="name"/>; returns this instance when <paramref name="module"/> is already there.</summary>
    /// <exception cref="KeyNotFoundException">No child has that name.</exception>
    public ModuleChildren SetItem(string name, Module module)
    {
        var i = IndexOf(name);
        if (i < 0) throw new KeyNotFoundException($"no child '{name}'; children: {string.Join(", ", Names)}");
        if (ReferenceEquals(_items[i].Module, module)) return this;
        return new(_items.SetItem(i, new NamedModule(name, module)));
    }

    /// <summary>Applies <paramref name="map"/> to every child; returns this instance when every child maps to itself.</summary>
    public ModuleChildren Map(Func<NamedModule, Module> map)
    {
        ImmutableArray<NamedModule>.Builder? b = null;
        for (var i = 0; i < _items.Length; i++)
        {
            var m = map(_items[i]);
            if (b is null && !ReferenceEquals(m, _items[i].Module))
            {
                b = ImmutableArray.CreateBuilder<NamedModule>(_items.Length);
                for (var j = 0; j < i; j++) b.Add(_items[j]);
            }
            b?.Add(new NamedModule(_items[i].Name, m));
        }
        return b is null ? this : new(b.MoveToImmutable());
    }

    /// <inheritdoc />
    public IEnumerator<NamedModule> GetEnumerator() => ((IEnumerable<NamedModule>)_items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Same names in the same order with structurally equal children.</summary>
    public bool Equals(ModuleChildren? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || other.Count != Count) return false;
        for (var i = 0; i < Count; i++)
            if (_items[i].Name != other._items[i].Name || !_items[i].Module.Equals(other._items[i].Module)) return false;
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as ModuleChildren);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var c in _items) h.Add(c.Name);
        return h.ToHashCode();
    }
}
