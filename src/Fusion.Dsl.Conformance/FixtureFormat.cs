using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl.Conformance;

/// <summary>
/// What <see cref="FixtureCase"/> and <see cref="FixtureModel"/> share about a <c>fusion-fixture/1</c> file pair
/// (<c>name.json</c> + <c>name.safetensors</c>): opening and checking the document, reading trees and named tensors,
/// and writing both files only after everything has been serialised.
/// </summary>
internal static class FixtureFormat
{
    public const string Format = "fusion-fixture/1";

    /// <summary>The safetensors file beside a fixture's JSON file.</summary>
    public static string TensorPathFor(string jsonPath)
    {
        if (jsonPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ModelFormatException(jsonPath, null, "give the .json file of the pair; its tensors are read from the .safetensors beside it");
        return Path.ChangeExtension(jsonPath, ".safetensors");
    }

    /// <summary>Opens the JSON, checks the format string, and reads the tensors beside it.</summary>
    public static ModelDocument Open(string jsonPath)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        var tensorPath = TensorPathFor(jsonPath);
        return ModelDocument.Open(jsonPath, Format, What, (_, _) => tensorPath);
    }

    /// <summary>As <see cref="Open(string)"/> for a file already opened and parsed.</summary>
    public static ModelDocument Open(ModelInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var tensorPath = TensorPathFor(input.Path);
        return ModelDocument.Open(input, Format, What, (_, _) => tensorPath);
    }

    private const string What = "a fusion-fixture file";

    /// <summary>Reads the <c>fuse</c> field: a list of names, a list of lists of names, or a mix or empty list (kept as given).</summary>
    public static FuseSpec ReadFuse(JsonElement e, JsonSource src) => FuseSpecJson.Read(e, src, "fuse");

    /// <summary>Everything needed to write one file pair.</summary>
    public sealed record Document(
        string Name, string Description, string? TorchVersion, bool Qat, FuseSpec Fuse, Module Model, string? InputKey,
        Action<Utf8JsonWriter, string> WriteExpect, IReadOnlyList<KeyValuePair<string, Tensor>> Tensors);

    /// <summary>Serialises both files first (so a model that cannot be written leaves no file behind), then writes them.</summary>
    public static void Write(string jsonPath, Document d)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        ModelDocument.WritePair(jsonPath, TensorPathFor(jsonPath), w =>
        {
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteString("name", d.Name);
            w.WriteString("description", d.Description);
            if (d.TorchVersion is not null) w.WriteString("torch_version", d.TorchVersion);
            w.WriteBoolean("qat", d.Qat);
            w.WritePropertyName("fuse");
            WriteFuse(w, d.Fuse);
            ModelDocument.WriteModel(w, d.Model, jsonPath);
            if (d.InputKey is null) w.WriteNull("input");
            else w.WriteString("input", d.InputKey);
            w.WriteStartObject("expect");
            d.WriteExpect(w, jsonPath);
            w.WriteEndObject();
            w.WriteEndObject();
        }, d.Tensors, new Dictionary<string, string> { ["case"] = d.Name });
    }

    private static void WriteFuse(Utf8JsonWriter w, FuseSpec fuse)
    {
        w.WriteStartArray();
        foreach (var e in fuse.Entries)
        {
            if (!e.IsGroup) { w.WriteStringValue(e.Name); continue; }
            w.WriteStartArray();
            foreach (var n in e.Group) w.WriteStringValue(n);
            w.WriteEndArray();
        }
        w.WriteEndArray();
    }
}
