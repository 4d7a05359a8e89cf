namespace Fusion.Dsl.Algebra;

/// <summary>The problem of a path that does not resolve, naming the missing segment and what exists there.</summary>
public sealed class ModulePathException : KeyNotFoundException
{
    /// <summary>Creates the error.</summary>
    public ModulePathException(string path, string missingSegment, string parentPath, IReadOnlyList<string> existing, string message)
        : base(message)
    {
        Path = path; MissingSegment = missingSegment; ParentPath = parentPath; ExistingChildren = existing;
    }

    /// <summary>The whole dotted path asked for.</summary>
    public string Path { get; }
    /// <summary>The first segment that does not exist.</summary>
    public string MissingSegment { get; }
    /// <summary>The path of the module that lacks it (<c>""</c> for the root).</summary>
    public string ParentPath { get; }
    /// <summary>The children that module does have.</summary>
    public IReadOnlyList<string> ExistingChildren { get; }
}

/// <summary>
/// Dotted paths into a module tree (<c>layer1.0.conv1</c>, <c>features.3</c>), as PyTorch names submodules.
/// <see cref="Replace"/> rebuilds only the modules on the path; every other subtree is shared.
/// </summary>
public static class ModulePath
{
    /// <summary>
    /// The path of <paramref name="name"/> below the module at <paramref name="parent"/>: <c>parent.name</c>, or
    /// <c>name</c> alone below the root (whose path is <c>""</c>), as PyTorch's <c>named_modules</c> spells it.
    /// </summary>
    public static string Join(string parent, string name) => parent.Length == 0 ? name : parent + "." + name;

    /// <summary>Splits a dotted path; the empty path is the root.</summary>
    public static string[] Split(string path) => path.Length == 0 ? [] : path.Split('.');

    /// <summary>The module at <paramref name="path"/>.</summary>
    /// <exception cref="ModulePathException">A segment does not exist; the message names it and the children that do.</exception>
    public static Module Get(Module root, string path)
    {
        if (TryGet(root, path, out var found)) return found;
        // Walked again by segments only to say which one is missing.
        var m = root;
        var segs = Split(path);
        for (var i = 0; ; i++)
        {
            if (!m.Children.TryGet(segs[i], out var next)) throw Missing(path, segs, i, m);
            m = next;
        }
    }

    /// <summary>Looks <paramref name="path"/> up without throwing.</summary>
    public static bool TryGet(Module root, string path, out Module module)
    {
        // Segment by segment in place: a fusion looks up every member several times, and splitting the path allocated an
        // array and a string per segment each time.
        module = root;
        if (path.Length == 0) return true;
        for (var start = 0; ;)
        {
            var end = path.IndexOf('.', start);
            var i = module.Children.IndexOf(end < 0 ? path.AsSpan(start) : path.AsSpan(start, end - start));
            if (i < 0) { module = null!; return false; }
            module = module.Children[i].Module;
            if (end < 0) return true;
            start = end + 1;
        }
    }

    /// <summary>
    /// A new tree with the module at <paramref name="path"/> replaced by <paramref name="replacement"/>. Modules off the path
    /// are the same objects as before; when the replacement is the module already there, <paramref name="root"/> itself is returned.
    /// </summary>
    /// <exception cref="ModulePathException">A segment does not exist.</exception>
    /// <exception cref="ArgumentException">The path is empty (replace the root by using the replacement itself).</exception>
    public static Module Replace(Module root, string path, Module replacement)
    {
        var segs = Split(path);
        if (segs.Length == 0) throw new ArgumentException("cannot replace the root by path; use the replacement itself");
        return ReplaceAt(root, path, segs, 0, replacement);
    }

    /// <summary>
    /// A new tree with every replacement applied in order, as successive <see cref="Replace"/> calls would apply them
    /// (a later path may lie inside or above an earlier one), but rebuilding each module on the changed paths once instead
    /// of once per replacement. Modules off the paths are shared; when nothing changes, <paramref name="root"/> itself is returned.
    /// Only the final tree is built, so only its containers' graphs are checked: an intermediate tree that a single
    /// <see cref="Replace"/> would refuse is fine when a later replacement repairs it.
    /// </summary>
    /// <exception cref="ModulePathException">A segment does not exist in the tree as the earlier replacements left it.</exception>
    /// <exception cref="ArgumentException">A path is empty, or a container's graph in the final tree calls a module that no longer exists.</exception>
    public static Module ReplaceAll(Module root, IEnumerable<KeyValuePair<string, Module>> replacements)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(replacements);
        var edits = new TreeEdits(root);
        foreach (var (path, module) in replacements)
        {
            ArgumentNullException.ThrowIfNull(path);
            if (path.Length == 0) throw new ArgumentException("cannot replace the root by path; use the replacement itself");
            edits.Set(path, module);
        }
        return edits.Build();
    }

    private static Module ReplaceAt(Module m, string path, string[] segs, int i, Module replacement)
    {
        if (!m.Children.TryGet(segs[i], out var child)) throw Missing(path, segs, i, m);
        var updated = i == segs.Length - 1 ? replacement : ReplaceAt(child, path, segs, i + 1, replacement);
        return m.WithChild(segs[i], updated);
    }

    /// <summary>Explains why <paramref name="path"/> does not resolve (or that it does).</summary>
    public static string Describe(Module root, string path)
    {
        try { Get(root, path); return "it exists"; }
        catch (ModulePathException e) { return e.Message; }
    }

    /// <summary>The error for segment <paramref name="i"/> of <paramref name="path"/> missing under <paramref name="parent"/>.</summary>
    internal static ModulePathException Missing(string path, string[] segs, int i, Module parent)
    {
        var parentPath = string.Join('.', segs.Take(i));
        var existing = parent.Children.Names.ToArray();
        var where = parentPath.Length == 0 ? $"the root {parent.TypeName}" : $"'{parentPath}' ({parent.TypeName})";
        var has = existing.Length == 0 ? "it has no children" : "its children are: " + string.Join(", ", existing);
        return new ModulePathException(path, segs[i], parentPath, existing,
            $"'{path}': {where} has no child '{segs[i]}'; {has}");
    }
}
