using System.Collections.Frozen;
using System.Text.Json;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// The registry of <c>torch.nn</c> layer kinds this project models, one <see cref="LayerDescriptor"/> each. The model-format
/// codec knows a layer only through it; the completeness test walks it and names any kind a consumer (codec, factory, ONNX
/// export and import, engine, naive reference) lacks. Each descriptor is declared beside its class; adding a kind adds it
/// here (docs/adding-a-layer.md).
/// </summary>
public static class LayerKinds
{
    private static readonly LayerDescriptor[] Kinds =
    [
        .. Conv.Descriptors, .. BatchNorm.Descriptors, Linear.Descriptor, .. Activation.Descriptors, Identity.Descriptor,
        Dropout.Descriptor, Flatten.Descriptor, MaxPool2d.Descriptor, AvgPool2d.Descriptor, AdaptiveAvgPool2d.Descriptor,
    ];

    private static readonly FrozenDictionary<string, LayerDescriptor> ByName = Kinds.ToFrozenDictionary(d => d.TypeName, StringComparer.Ordinal);

    /// <summary>Every layer kind, in the order the model format's documentation lists them.</summary>
    public static IReadOnlyList<LayerDescriptor> All => Kinds;

    /// <summary>The kind named <paramref name="typeName"/> in <c>torch.nn</c>, or null when it is not modelled here.</summary>
    public static LayerDescriptor? Find(string typeName)
    {
        ArgumentNullException.ThrowIfNull(typeName);
        return ByName.GetValueOrDefault(typeName);
    }

    /// <summary>The kind of <paramref name="module"/>, or null when it is not a modelled layer (a container, a fused group, ...).</summary>
    public static LayerDescriptor? Of(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return ByName.TryGetValue(module.TypeName, out var d) && d.Describes(module) ? d : null;
    }

    /// <summary>
    /// The kinds as JSON, <c>{type name: [argument names the module keeps, in order]}</c> sorted by name: what the Python exporter's
    /// list of layers (<c>fusion_torch.modules.layer_schema()</c>) is checked against (a test fails when they differ).
    /// </summary>
    public static string SchemaJson()
        => JsonSerializer.Serialize(Kinds.OrderBy(d => d.TypeName, StringComparer.Ordinal)
            .ToDictionary(d => d.TypeName, d => d.Parameters.Where(p => p.Written).Select(p => p.Name).ToArray()));
}
