using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Onnx.Import;

/// <summary>
/// The imported modules by dotted path, assembled into a tree of plain containers (<c>layer1.0.conv1</c> becomes
/// <c>layer1</c> → <c>0</c> → <c>conv1</c>). A path that would clash with another (a leaf where a container is, or the
/// reverse) gets a <c>_2</c>, <c>_3</c> suffix on its last segment.
/// </summary>
internal sealed class ModuleTree
{
    private readonly Dictionary<string, Module> _leaves = new(StringComparer.Ordinal);
    private readonly HashSet<string> _containers = new(StringComparer.Ordinal);
    private readonly List<string> _order = [];

    /// <summary>The module already registered at <paramref name="path"/>, or null.</summary>
    public Module? Get(string path) => _leaves.GetValueOrDefault(path);

    /// <summary>Whether <paramref name="path"/> is a container (a proper prefix of a registered path).</summary>
    public bool IsContainer(string path) => _containers.Contains(path);

    /// <summary>Registers <paramref name="module"/> at <paramref name="path"/> or, if that clashes, at a suffixed path;
    /// returns the path used.</summary>
    public string Add(string path, Module module)
    {
        // Under a leaf nothing can be added: such a path becomes one name at the root.
        var segments0 = path.Split('.');
        for (var i = 1; i < segments0.Length; i++)
            if (_leaves.ContainsKey(string.Join('.', segments0[..i]))) { path = path.Replace('.', '_'); break; }
        var candidate = path;
        for (var i = 2; Clashes(candidate); i++) candidate = path + "_" + i.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _leaves[candidate] = module;
        _order.Add(candidate);
        var segments = candidate.Split('.');
        for (var i = 1; i < segments.Length; i++) _containers.Add(string.Join('.', segments[..i]));
        return candidate;
    }

    private bool Clashes(string path)
    {
        if (_leaves.ContainsKey(path) || _containers.Contains(path)) return true;
        var segments = path.Split('.');
        for (var i = 1; i < segments.Length; i++)
            if (_leaves.ContainsKey(string.Join('.', segments[..i]))) return true;
        return false;
    }

    /// <summary>The children of the root, in the order their first module was registered.</summary>
    public ModuleChildren Build() => Children("");

    private ModuleChildren Children(string prefix)
    {
        var names = new List<string>();
        foreach (var path in _order)
        {
            if (prefix.Length > 0 && !path.StartsWith(prefix + ".", StringComparison.Ordinal)) continue;
            var rest = prefix.Length == 0 ? path : path[(prefix.Length + 1)..];
            var name = rest.Split('.')[0];
            if (!names.Contains(name)) names.Add(name);
        }
        return ModuleChildren.Create(names.Select(n =>
        {
            var full = prefix.Length == 0 ? n : prefix + "." + n;
            return new NamedModule(n, _leaves.TryGetValue(full, out var leaf)
                ? leaf
                : UserModule.Create("Module", Children(full)));
        }));
    }
}
