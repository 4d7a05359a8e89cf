using System.Reflection;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.LayerCodegen;

/// <summary>The classes that declare layer kinds, and their kinds: one static <c>Descriptor</c> or <c>Descriptors</c> property each.</summary>
/// <param name="Owner">The class (<c>Conv</c>).</param>
/// <param name="Member">The property's name, <c>Descriptor</c> or <c>Descriptors</c>.</param>
/// <param name="Kinds">The kinds it declares, in its order.</param>
public sealed record LayerDeclaration(Type Owner, string Member, IReadOnlyList<LayerDescriptor> Kinds);

/// <summary>An engine forward marked beside its kernel.</summary>
/// <param name="TypeName">The kind it computes.</param>
/// <param name="Method">The method, as <c>Class.Method</c>.</param>
/// <param name="ModuleType">The class its module parameter takes.</param>
public sealed record EngineForward(string TypeName, string Method, Type ModuleType);

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

    /// <summary>
    /// The engine's forwards: every static method of the engine assembly marked <c>[LayerForward("Kind")]</c>, ordered by kind,
    /// each checked to take <c>(Evaluator, the kind's class or a base of it, Tensor)</c> and return a tensor.
    /// </summary>
    /// <exception cref="InvalidOperationException">A marked method names no kind, has another signature, or a kind is marked twice.</exception>
    public static IReadOnlyList<EngineForward> EngineForwards(IReadOnlyList<LayerDescriptor> kinds)
    {
        const BindingFlags flags = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly;
        var engine = typeof(Engine.Forward).Assembly;
        var marker = engine.GetType("Fusion.Dsl.Engine.LayerForwardAttribute", throwOnError: true)!;
        var evaluator = engine.GetType("Fusion.Dsl.Engine.Evaluator", throwOnError: true)!;
        var tensor = typeof(Tensors.Tensor);
        var found = new List<EngineForward>();
        foreach (var t in engine.GetTypes())
            foreach (var m in t.GetMethods(flags))
                foreach (var a in m.GetCustomAttributes(marker, false))
                {
                    var name = (string)marker.GetProperty("TypeName")!.GetValue(a)!;
                    var where = $"{t.Name}.{m.Name}";
                    var kind = kinds.FirstOrDefault(k => k.TypeName == name)
                               ?? throw new InvalidOperationException($"{where} is marked as the forward of '{name}', which is no declared layer kind");
                    var ps = m.GetParameters();
                    if (ps.Length != 3 || ps[0].ParameterType != evaluator || !ps[1].ParameterType.IsAssignableFrom(kind.ModuleType)
                        || ps[2].ParameterType != tensor || m.ReturnType != tensor)
                        throw new InvalidOperationException($"{where} must be Tensor {m.Name}(Evaluator ev, {kind.ModuleType.Name} m, Tensor x) to be {name}'s forward");
                    if (found.Any(f => f.TypeName == name)) throw new InvalidOperationException($"{name} has two engine forwards, {found.First(f => f.TypeName == name).Method} and {where}");
                    found.Add(new EngineForward(name, where, ps[1].ParameterType));
                }
        return [.. found.OrderBy(f => f.TypeName, StringComparer.Ordinal)];
    }

    /// <summary>Every kind, in the order of <see cref="Declarations"/>.</summary>
    public static IReadOnlyList<LayerDescriptor> Discover() => [.. Declarations().SelectMany(d => d.Kinds)];
}
