namespace Fusion.Dsl.Algebra;

/// <summary>
/// A set of dotted module paths that also says whether a path lies strictly inside or strictly above one of them, in time
/// proportional to the path's depth rather than to the set's size: a fusion of n groups asks this once or more per group
/// of a set that grows to every path it rewrote, which scanning made quadratic in n.
/// </summary>
/// <remarks>Not thread-safe; a working object of one rewrite.</remarks>
internal sealed class PathSet
{
    private readonly HashSet<string> _paths = new(StringComparer.Ordinal);
    // Every proper prefix of a member ("a" and "a.b" for "a.b.c"): a path is above a member exactly when it is one of them.
    private readonly HashSet<string> _above = new(StringComparer.Ordinal);

    /// <summary>How many paths the set holds.</summary>
    public int Count => _paths.Count;

    /// <summary>Adds <paramref name="path"/> (a no-op when it is already there).</summary>
    public void Add(string path)
    {
        if (!_paths.Add(path)) return;
        // Shortest prefix last: once a prefix is known, so are all the shorter ones.
        for (var end = path.LastIndexOf('.'); end > 0; end = path.LastIndexOf('.', end - 1))
            if (!_above.Add(path[..end])) break;
    }

    /// <summary>Whether <paramref name="path"/> itself is in the set.</summary>
    public bool Contains(string path) => _paths.Contains(path);

    /// <summary>Whether <paramref name="path"/> lies strictly inside a member or strictly above one (not whether it is one).
    /// The root's empty path is neither: the callers ask about the paths of modules that can be replaced.</summary>
    public bool Nests(string path)
    {
        if (_above.Contains(path)) return true;
        var members = _paths.GetAlternateLookup<ReadOnlySpan<char>>();
        for (var end = path.IndexOf('.'); end >= 0; end = path.IndexOf('.', end + 1))
            if (members.Contains(path.AsSpan(0, end))) return true;
        return false;
    }

    /// <summary>Empties the set.</summary>
    public void Clear()
    {
        _paths.Clear();
        _above.Clear();
    }
}
