using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Onnx;

/// <summary>
/// The layer kinds (<see cref="LayerKinds"/>) that ONNX export or import does not map, each with the reason its descriptor
/// states (<see cref="LayerDescriptor.NotExported"/>, <see cref="LayerDescriptor.NotImported"/>): a stated refusal. The
/// completeness test holds both sides to it: a kind listed here must be refused (export) or never built (import), and every
/// kind not listed must export, and read back as itself.
/// </summary>
internal static class OnnxLayerCoverage
{
    /// <summary>Kinds the exporter refuses, by type name, with the reason it gives.</summary>
    public static IReadOnlyDictionary<string, string> NotExported { get; } = LayerKinds.All
        .Where(d => d.NotExported is not null).ToDictionary(d => d.TypeName, d => d.NotExported!, StringComparer.Ordinal);

    /// <summary>Kinds the importer never builds, by type name, with why.</summary>
    public static IReadOnlyDictionary<string, string> NotImported { get; } = LayerKinds.All
        .Where(d => d.NotImported is not null).ToDictionary(d => d.TypeName, d => d.NotImported!, StringComparer.Ordinal);
}
