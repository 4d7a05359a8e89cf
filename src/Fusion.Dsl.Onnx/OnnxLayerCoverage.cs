namespace Fusion.Dsl.Onnx;

/// <summary>
/// The layer kinds (<see cref="Layers.LayerKinds"/>) that ONNX export or import does not map, each with the reason: a stated
/// refusal. The completeness test holds both sides to it: a kind listed here must be refused (export) or never built
/// (import), and every kind not listed must export, and read back as itself.
/// </summary>
internal static class OnnxLayerCoverage
{
    /// <summary>Kinds the exporter refuses, by type name, with the reason it gives. None: every modelled layer has an ONNX form.</summary>
    public static IReadOnlyDictionary<string, string> NotExported { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Kinds the importer never builds, by type name, with why.</summary>
    public static IReadOnlyDictionary<string, string> NotImported { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["Identity"] = "the exporter writes no node for it, and an ONNX Identity node is read as an alias of its input, not a module",
        ["Dropout"] = "an inference graph has no dropout (the exporter writes the identity), and an ONNX Dropout node is read as an alias of its input",
    };
}
