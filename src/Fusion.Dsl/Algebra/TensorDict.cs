using System.Collections;
using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// A module's own parameters and buffers by name, in PyTorch's <c>state_dict</c> order
/// (parameters first, then buffers). Immutable; equality is structural and bit-exact.
/// </summary>
public sealed class TensorDict : IReadOnlyList<KeyValuePair<string, Tensor>>, IEquatable<TensorDict>
{
    private readonly ImmutableArray<KeyValuePair<string, Tensor>> _items;

    /// <summary>The empty dictionary, shared by every stateless module.</summary>
    public static TensorDict Empty { get; } = new(ImmutableArray<KeyValuePair<string, Tensor>>.Empty);

    private TensorDict(ImmutableArray<KeyValuePair<string, Tensor>> items) => _items = items;

    /// <summary>Builds a dictionary from (name, tensor) pairs, skipping null tensors (an absent bias).</summary>
    /// <exception cref="ArgumentException">A name repeats or is empty.</exception>
    public static TensorDict Create(params (string Name, Tensor? Tensor)[] entries)
    {
        var b = ImmutableArray.CreateBuilder<KeyValuePair<string, Tensor>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in entries)
        {
            if (t is null) continue;
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("state entry with an empty name");
            if (!seen.Add(name)) throw new ArgumentException($"state entry '{name}' appears twice");
            b.Add(new(name, t));
        }
        return b.Count == 0 ? Empty : new(b.ToImmutable());
    }

    /// <inheritdoc />
    public int Count => _items.Length;

    /// <inheritdoc />
    public KeyValuePair<string, Tensor> this[int index] => _items[index];

    /// <summary>The tensor called <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No entry has that name.</exception>
    public Tensor this[string name] => TryGet(name) ?? throw new KeyNotFoundException($"no state entry '{name}'; entries: {string.Join(", ", Names)}");

    /// <summary>The tensor called <paramref name="name"/>, or null.</summary>
    public Tensor? TryGet(string name)
    {
        if (_items.Length <= LinearLookupCount)
        {
            foreach (var e in _items) if (e.Key == name) return e.Value;
            return null;
        }
        // Built on the first lookup in a long dictionary (an imported graph may keep thousands of constants on its root);
        // immutable, so a race at worst builds the same index twice.
        var index = _index ??= _items.ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);
        return index.GetValueOrDefault(name);
    }

    /// <summary>Up to this many entries a scan is as fast as a dictionary and allocates nothing.</summary>
    private const int LinearLookupCount = 16;

    private Dictionary<string, Tensor>? _index;

    /// <summary>The names in order.</summary>
    public IEnumerable<string> Names => _items.Select(e => e.Key);

    /// <inheritdoc />
    public IEnumerator<KeyValuePair<string, Tensor>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, Tensor>>)_items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Same names in the same order with bit-identical tensors.</summary>
    public bool Equals(TensorDict? other)
    {
        if (ReferenceEquals(this, other)) return true;
        if (other is null || other.Count != Count) return false;
        for (var i = 0; i < Count; i++)
            if (_items[i].Key != other._items[i].Key || !_items[i].Value.Equals(other._items[i].Value)) return false;
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as TensorDict);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var e in _items) h.Add(e.Key);
        return h.ToHashCode();
    }
}
