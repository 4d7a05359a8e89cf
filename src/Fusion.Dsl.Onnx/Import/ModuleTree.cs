using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Onnx.Import;

/// <summary>
/// The imported modules by dotted path, assembled into a tree of plain containers (<c>layer1.0.conv1</c> becomes
/// <c>layer1</c> → <c>0</c> → <c>conv1</c>). A path that would clash with another (a leaf where a container is, or the
/// reverse) gets a <c>_2</c>, <c>_3</c> suffix on its last segment. Kept as a tree of segments, so that every operation
/// costs the path's length whatever the number of modules (a set of every prefix string grew with the square of the depth).
/// </summary>
internal sealed class ModuleTree
{
    private sealed class Node
    {
        public Module? Leaf;
        public readonly Dictionary<string, Node> Children = new(StringComparer.Ordinal);
        public readonly List<string> Order = [];   // children in the order their first module was registered
    }

    private readonly Node _root = new();
    private readonly Dictionary<string, int> _nextSuffix = new(StringComparer.Ordinal);

    /// <summary>The module already registered at <paramref name="path"/>, or null.</summary>
    public Module? Get(string path) => Find(path)?.Leaf;

    /// <summary>Whether <paramref name="path"/> is a container (a proper prefix of a registered path).</summary>
    public bool IsContainer(string path) => Find(path) is { Leaf: null };

    /// <summary>Whether <paramref name="path"/> is registered or a container of registered paths.</summary>
    public bool Contains(string path) => Find(path) is not null;   // every node lies on a registered path

    /// <summary>Registers <paramref name="module"/> at <paramref name="path"/> or, if that clashes, at a suffixed path;
    /// returns the path used.</summary>
    public string Add(string path, Module module)
    {
        // Under a leaf nothing can be added: such a path becomes one name at the root.
        if (UnderLeaf(path.Split('.'))) path = path.Replace('.', '_');
        var candidate = path;
        if (Clashes(candidate))
        {
            // The next suffix to try is remembered per path, so many modules wanting one path cost one step each.
            var i = _nextSuffix.GetValueOrDefault(path, 2);
            while (Clashes(candidate = path + "_" + i.ToString(CultureInfo.InvariantCulture))) i++;
            _nextSuffix[path] = i + 1;
        }
        var node = _root;
        foreach (var s in candidate.Split('.'))
        {
            if (!node.Children.TryGetValue(s, out var child))
            {
                node.Children[s] = child = new Node();
                node.Order.Add(s);
            }
            node = child;
        }
        node.Leaf = module;
        return candidate;
    }

    private Node? Find(string path)
    {
        var node = _root;
        foreach (var s in path.Split('.'))
            if (!node.Children.TryGetValue(s, out node)) return null;
        return node;
    }

    /// <summary>Whether a proper prefix of the path is a registered module.</summary>
    private bool UnderLeaf(string[] segments)
    {
        var node = _root;
        for (var i = 0; i < segments.Length - 1; i++)
        {
            if (!node.Children.TryGetValue(segments[i], out node)) return false;
            if (node.Leaf is not null) return true;
        }
        return false;
    }

    private bool Clashes(string path) => UnderLeaf(path.Split('.')) || Contains(path);

    /// <summary>The children of the root, in the order their first module was registered.</summary>
    public ModuleChildren Build() => Children(_root);

    private static ModuleChildren Children(Node node)
        => ModuleChildren.Create(node.Order.Select(name =>
        {
            var child = node.Children[name];
            return new NamedModule(name, child.Leaf ?? UserModule.Create("Module", Children(child)));
        }));
}
