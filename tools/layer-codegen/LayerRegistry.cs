using System.Reflection;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.LayerCodegen;

/// <summary>The classes that declare layer kinds, and their kinds: one static <c>Descriptor</c> or <c>Descriptors</c> property each.</summary>
/// <param name="Owner">The class (<c>Conv</c>).</param>
/// <param name="Member">The property's name, <c>Descriptor</c> or <c>Descriptors</c>.</param>
/// <param name="Kinds">The kinds it declares, in its order.</param>
public sealed record LayerDeclaration(Type Owner, string Member, IReadOnlyList<LayerDescriptor> Kinds);

/// <summary>
/// Finds every declared kind by reflection over the core assembly, not through <see cref="LayerKinds"/>: the registry's list is
/// itself generated from what is found, so a kind declared beside its class is registered by one run of the generator.
/// </summary>
public static class LayerRegistry
{
    /// <summary>The declarations, ordered by class name.</summary>
    public static IReadOnlyList<LayerDeclaration> Declarations()
    {
        const BindingFlags flags = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
        var found = new List<LayerDeclaration>();
        foreach (var t in typeof(LayerKinds).Assembly.GetTypes().Where(t => t.Namespace == typeof(LayerKinds).Namespace).OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            if (t.GetProperty("Descriptor", flags) is { PropertyType: var one } p && one == typeof(LayerDescriptor))
                found.Add(new(t, p.Name, [(LayerDescriptor)p.GetValue(null)!]));
            if (t.GetProperty("Descriptors", flags) is { } many && typeof(IEnumerable<LayerDescriptor>).IsAssignableFrom(many.PropertyType))
                found.Add(new(t, many.Name, [.. (IEnumerable<LayerDescriptor>)many.GetValue(null)!]));
        }
        return found;
    }

    /// <summary>Every kind, in the order of <see cref="Declarations"/>.</summary>
    public static IReadOnlyList<LayerDescriptor> Discover() => [.. Declarations().SelectMany(d => d.Kinds)];
}
