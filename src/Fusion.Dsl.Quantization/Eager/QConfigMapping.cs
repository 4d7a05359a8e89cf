using System.Collections.Immutable;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// Which qconfig each module gets, as PyTorch's eager <c>propagate_qconfig_</c> reads it: a global qconfig (the root's
/// <c>model.qconfig</c>), qconfigs by module type (<c>qconfig_dict</c>'s type keys) and by dotted path (its string keys,
/// and a module's own <c>.qconfig</c> attribute, which wins over both). A null qconfig is PyTorch's <c>None</c>: the
/// module and, unless a descendant has its own entry, its whole subtree stay float. An immutable value; every
/// <c>With</c> returns a new mapping.
/// </summary>
public sealed class QConfigMapping
{
    private QConfigMapping(QConfig? global, ImmutableDictionary<string, QConfig?> byType, ImmutableDictionary<string, QConfig?> byPath)
    {
        Global = global;
        ByType = byType;
        ByPath = byPath;
    }

    /// <summary>A mapping that quantizes nothing (PyTorch without any <c>.qconfig</c>).</summary>
    public static QConfigMapping Empty { get; } = new(null, ImmutableDictionary<string, QConfig?>.Empty.WithComparers(StringComparer.Ordinal), ImmutableDictionary<string, QConfig?>.Empty.WithComparers(StringComparer.Ordinal));

    /// <summary>A mapping whose every module gets <paramref name="qconfig"/> (PyTorch's <c>model.qconfig = qconfig</c>).</summary>
    public static QConfigMapping ForAll(QConfig? qconfig) => Empty.WithGlobal(qconfig);

    /// <summary>The qconfig of the root, inherited by every module without an entry of its own.</summary>
    public QConfig? Global { get; }

    /// <summary>Qconfigs by PyTorch type name (<c>Linear</c>, <c>ConvReLU2d</c>, a user class name); null entries are <c>None</c>.</summary>
    public ImmutableDictionary<string, QConfig?> ByType { get; }

    /// <summary>Qconfigs by dotted module path; null entries are <c>None</c>.</summary>
    public ImmutableDictionary<string, QConfig?> ByPath { get; }

    /// <summary>This mapping with another global qconfig.</summary>
    public QConfigMapping WithGlobal(QConfig? qconfig) => new(qconfig, ByType, ByPath);

    /// <summary>This mapping with modules of type <paramref name="typeName"/> given <paramref name="qconfig"/> (null: <c>None</c>).</summary>
    /// <exception cref="ArgumentException">An empty type name.</exception>
    public QConfigMapping WithType(string typeName, QConfig? qconfig)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(typeName);
        return new(Global, ByType.SetItem(typeName, qconfig), ByPath);
    }

    /// <summary>This mapping with the module at <paramref name="path"/> given <paramref name="qconfig"/> (null: <c>None</c>);
    /// it is inherited by the subtree. The path is checked against the model by <see cref="EagerQuantization.PropagateQConfig"/>.</summary>
    /// <exception cref="ArgumentNullException">A null path (the root is <c>""</c>, which sets the global qconfig).</exception>
    public QConfigMapping WithPath(string path, QConfig? qconfig)
    {
        ArgumentNullException.ThrowIfNull(path);
        return path.Length == 0 ? WithGlobal(qconfig) : new(Global, ByType, ByPath.SetItem(path, qconfig));
    }
}
