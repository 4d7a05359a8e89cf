namespace Fusion.Dsl.Algebra;

/// <summary>
/// Replacements pending on an immutable tree: reads see them at once, and <see cref="Build"/> applies them all in one
/// rewrite that rebuilds each module on a changed path once. Replacing path by path rebuilt the root (and re-checked its
/// graph's calls) once per replacement: 156 times for mobilenet_v2's fusion.
/// </summary>
/// <remarks>
/// Not thread-safe; a working object that lives for one rewrite. Invariant: no pending path lies inside another, so a
/// path meets at most one of them.
/// </remarks>
internal sealed class TreeEdits
{
    private readonly Dictionary<string, Module> _pending = new(StringComparer.Ordinal);
    // Every path pending now or since the last build (a removed one may stay): what a new path could lie above.
    private readonly PathSet _pendingPaths = new();
    private Module _root;

    public TreeEdits(Module root) => _root = root;

    /// <summary>The module at <paramref name="path"/> as the pending replacements make it.</summary>
    /// <exception cref="ModulePathException">A segment does not exist.</exception>
    public Module Get(string path)
    {
        if (_pending.Count == 0) return ModulePath.Get(_root, path);
        var (at, rest) = Locate(path);
        if (at is null) return ModulePath.Get(_root, path);
        if (rest.Length == 0) return _pending[at];
        try { return ModulePath.Get(_pending[at], rest); }
        catch (ModulePathException e) { throw Rebase(e, at, path); }
    }

    /// <summary>An error found below the pending path <paramref name="at"/>, restated for the whole <paramref name="path"/>.</summary>
    private ModulePathException Rebase(ModulePathException e, string at, string path)
    {
        var parentPath = e.ParentPath.Length == 0 ? at : at + "." + e.ParentPath;
        var segs = ModulePath.Split(path);
        return ModulePath.Missing(path, segs, ModulePath.Split(parentPath).Length, Get(parentPath));
    }

    /// <summary>Replaces the module at <paramref name="path"/>, as <see cref="ModulePath.Replace"/> on the current tree would.</summary>
    /// <exception cref="ModulePathException">A segment does not exist.</exception>
    public void Set(string path, Module replacement)
    {
        ArgumentNullException.ThrowIfNull(replacement);
        var (at, rest) = Locate(path);
        if (at is not null && rest.Length > 0)
        {
            try { _pending[at] = ModulePath.Replace(_pending[at], rest, replacement); }
            catch (ModulePathException e) { throw Rebase(e, at, path); }
            return;
        }
        Get(path);   // the path must exist, as Replace requires
        // The replacement drops what was pending inside it. Looked for only when something may be there: fusing replaces
        // leaves, and scanning every pending path on every replacement made a fusion quadratic in its groups.
        if (_pendingPaths.Nests(path))
        {
            var inside = path + ".";
            foreach (var p in _pending.Keys.Where(p => p.StartsWith(inside, StringComparison.Ordinal)).ToList()) _pending.Remove(p);
        }
        _pending[path] = replacement;
        _pendingPaths.Add(path);
    }

    /// <summary>The tree with every pending replacement applied; the tree itself when none is pending. Afterwards the
    /// result is the new base and nothing is pending.</summary>
    public Module Build()
    {
        if (_pending.Count == 0) return _root;
        var trie = new Node();
        foreach (var (path, module) in _pending)
        {
            var n = trie;
            foreach (var s in ModulePath.Split(path))
            {
                n.Children ??= new Dictionary<string, Node>(StringComparer.Ordinal);
                if (!n.Children.TryGetValue(s, out var next)) n.Children[s] = next = new Node();
                n = next;
            }
            n.Replacement = module;
        }
        _root = Rewrite(_root, trie);
        _pending.Clear();
        _pendingPaths.Clear();
        return _root;
    }

    private static Module Rewrite(Module m, Node n)
    {
        if (n.Replacement is { } r) return r;
        return m.WithChildren(m.Children.Map(c => n.Children!.TryGetValue(c.Name, out var sub) ? Rewrite(c.Module, sub) : c.Module));
    }

    /// <summary>The pending path that is <paramref name="path"/> or contains it, and the rest of the path below it.</summary>
    private (string? At, string Below) Locate(string path)
    {
        if (_pending.Count == 0) return (null, path);
        // Prefixes looked up as spans: no string per level unless one is pending.
        var pending = _pending.GetAlternateLookup<ReadOnlySpan<char>>();
        for (var end = path.IndexOf('.'); ; end = path.IndexOf('.', end + 1))
        {
            if (pending.TryGetValue(end < 0 ? path : path.AsSpan(0, end), out var at, out _)) return (at, end < 0 ? "" : path[(end + 1)..]);
            if (end < 0) return (null, path);
        }
    }

    private sealed class Node
    {
        public Module? Replacement;
        public Dictionary<string, Node>? Children;
    }
}
