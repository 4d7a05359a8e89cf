using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// What <see cref="FixtureCase"/> and <see cref="ModelFile"/> share about a <c>fusion-fixture/1</c> file pair
/// (<c>name.json</c> + <c>name.safetensors</c>): opening and checking the document, reading trees and named tensors,
/// and writing both files only after everything has been serialised.
/// </summary>
internal static class FixtureFormat
{
    public const string Format = "fusion-fixture/1";

    /// <summary>The document of a fixture file with its tensors.</summary>
    public sealed class Opened(JsonDocument doc, JsonSource src, string tensorPath, IReadOnlyList<KeyValuePair<string, Tensor>> inFileOrder) : IDisposable
    {
        private readonly Dictionary<string, Tensor> tensors = inFileOrder.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

        public JsonElement Root => doc.RootElement;
        public JsonSource Src => src;
        public string TensorPath => tensorPath;
        public IReadOnlyDictionary<string, Tensor> Tensors => tensors;
        /// <summary>The tensors in file order.</summary>
        public IReadOnlyList<KeyValuePair<string, Tensor>> InFileOrder => inFileOrder;
        public void Dispose() => doc.Dispose();

        /// <summary>The tensor called <paramref name="key"/>, named by the JSON field <paramref name="field"/>.</summary>
        public Tensor Named(string key, string field) => NamedEntry(key, field).Value;

        /// <summary>The tensor called <paramref name="key"/> with its key, named by the JSON field <paramref name="field"/>.</summary>
        public KeyValuePair<string, Tensor> NamedEntry(string key, string field)
            => tensors.TryGetValue(key, out var t) ? new(key, t)
                : throw src.Fail(field, $"names the tensor '{key}', which {Path.GetFileName(tensorPath)} does not hold");

        /// <summary>The root graph (null when the field is null or absent).</summary>
        public Graph? Forward()
            => JsonSource.TryGetNonNull(Root, "forward", out var f) ? GraphJson.Read(f, src, "forward") : null;

        /// <summary>Reads a module tree whose tensors carry <paramref name="prefix"/>, attaches the root graph, and checks
        /// that every tensor with that prefix was used.</summary>
        public Module Tree(JsonElement e, string prefix, Graph? forward)
        {
            var source = new TensorSource(tensors, prefix, src, Path.GetFileName(tensorPath));
            var tree = ModuleJson.TreeName(prefix);
            var m = ModuleJson.AttachForward(ModuleJson.Read(e, source, src, tree), forward, src, tree);
            source.RequireAllUsed();
            return m;
        }
    }

    /// <summary>The safetensors file beside a fixture's JSON file.</summary>
    public static string TensorPathFor(string jsonPath)
    {
        if (jsonPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ModelFormatException(jsonPath, null, "give the .json file of the pair; its tensors are read from the .safetensors beside it");
        return Path.ChangeExtension(jsonPath, ".safetensors");
    }

    /// <summary>Opens the JSON, checks the top-level fields and the format string, and reads the tensors beside it.</summary>
    public static Opened Open(string jsonPath)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        var tensorPath = TensorPathFor(jsonPath);
        var doc = JsonSource.ParseFile(jsonPath);
        try
        {
            var src = new JsonSource(jsonPath);
            var root = doc.RootElement;
            // Fields this reader does not know are ignored: the generator may record more about a case over time
            // (as it did with expect.reference_error); the fields it knows are checked strictly where they are read.
            src.RequireOpenObject(root, null, "a fusion-fixture file");
            var format = src.String(src.Required(root, "format", null, "a fusion-fixture file"), "format", "'format'");
            if (format != Format) throw src.Fail("format", $"unsupported format '{format}' (this reader reads '{Format}')");
            var content = SafeTensors.ReadContent(tensorPath);
            return new Opened(doc, src, tensorPath, content.Tensors);
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    /// <summary>Reads the <c>fuse</c> field: a list of names, a list of lists of names, or a mix or empty list (kept as given).</summary>
    public static FuseSpec ReadFuse(JsonElement e, JsonSource src)
    {
        if (e.ValueKind != JsonValueKind.Array) throw src.Fail("fuse", $"must be a list of names or a list of lists of names, got {JsonSource.Describe(e)}");
        var entries = new List<FuseEntry>();
        var i = 0;
        foreach (var x in e.EnumerateArray())
        {
            var loc = $"fuse[{i++}]";
            entries.Add(x.ValueKind switch
            {
                JsonValueKind.String => FuseEntry.OfName(x.GetString()!),
                JsonValueKind.Array => FuseEntry.OfGroup(x.EnumerateArray().Select(n => src.String(n, loc, "a name in a fuse group")).ToList()),
                _ => throw src.Fail(loc, $"must be a name or a list of names, got {JsonSource.Describe(x)}"),
            });
        }
        return new FuseSpec(entries);
    }

    /// <summary>Everything needed to write one file pair.</summary>
    public sealed record Document(
        string Name, string Description, string? TorchVersion, bool Qat, FuseSpec Fuse, Module Model, string? InputKey,
        Action<Utf8JsonWriter, string> WriteExpect, IReadOnlyList<KeyValuePair<string, Tensor>> Tensors);

    /// <summary>Serialises both files first (so a model that cannot be written leaves no file behind), then writes them.</summary>
    public static void Write(string jsonPath, Document d)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        var tensorPath = TensorPathFor(jsonPath);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, JsonOut.Indented))
        {
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteString("name", d.Name);
            w.WriteString("description", d.Description);
            if (d.TorchVersion is not null) w.WriteString("torch_version", d.TorchVersion);
            w.WriteBoolean("qat", d.Qat);
            w.WritePropertyName("fuse");
            WriteFuse(w, d.Fuse);
            w.WritePropertyName("model");
            ModuleJson.Write(w, d.Model, jsonPath, "model");
            w.WritePropertyName("forward");
            if (d.Model is UserModule { Forward: { } g }) GraphJson.Write(w, g, jsonPath);
            else w.WriteNullValue();
            if (d.InputKey is null) w.WriteNull("input");
            else w.WriteString("input", d.InputKey);
            w.WriteStartObject("expect");
            d.WriteExpect(w, jsonPath);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        var tensorBytes = SafeTensors.Serialize(d.Tensors, new Dictionary<string, string> { ["case"] = d.Name }, tensorPath);
        SafeTensors.WriteAtomically(tensorPath, tensorBytes);
        SafeTensors.WriteAtomically(jsonPath, ms.ToArray());
    }

    /// <summary>The root graph a second tree must share with the model, since the format stores one forward.</summary>
    public static void RequireSameForward(Module model, Module other, string fileName, string what)
    {
        var g1 = (model as UserModule)?.Forward;
        var g2 = (other as UserModule)?.Forward;
        if (!Equals(g1, g2))
            throw new ModelFormatException(fileName, what, "its root forward graph differs from the model's; the format stores one graph for both trees");
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
