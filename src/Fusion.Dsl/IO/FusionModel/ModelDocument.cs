using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// A JSON document opened with the safetensors file beside it, as both of this project's file formats pair them
/// (<c>fusion-model/1</c>, read by <see cref="ModelFile"/>, and the conformance format <c>fusion-fixture/1</c>): the
/// format string checked, module trees and the root graph read with their tensors, named tensors looked up.
/// </summary>
internal sealed class ModelDocument : IDisposable
{
    private readonly JsonDocument _doc;
    private readonly Dictionary<string, Tensor> _tensors;

    private ModelDocument(JsonDocument doc, JsonSource src, string tensorPath, IReadOnlyList<KeyValuePair<string, Tensor>> inFileOrder)
    {
        _doc = doc;
        Src = src;
        TensorPath = tensorPath;
        InFileOrder = inFileOrder;
        _tensors = inFileOrder.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>The root object.</summary>
    public JsonElement Root => _doc.RootElement;
    /// <summary>Error reporting for the JSON file.</summary>
    public JsonSource Src { get; }
    /// <summary>The safetensors file read beside the JSON.</summary>
    public string TensorPath { get; }
    /// <summary>The tensors by key.</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;
    /// <summary>The tensors in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, Tensor>> InFileOrder { get; }

    /// <inheritdoc />
    public void Dispose() => _doc.Dispose();

    /// <summary>
    /// Opens <paramref name="jsonPath"/>, checks that it is an object whose <c>format</c> is <paramref name="format"/>, and
    /// reads the tensors of <paramref name="tensorPathOf"/>(root) (the safetensors file the document names or implies).
    /// </summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the format differs.</exception>
    public static ModelDocument Open(string jsonPath, string format, string what, Func<JsonElement, JsonSource, string> tensorPathOf)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        return Open(JsonSource.ParseFile(jsonPath), jsonPath, format, what, tensorPathOf);
    }

    /// <summary>As <see cref="Open(string, string, string, Func{JsonElement, JsonSource, string})"/> for a file already
    /// opened and parsed, whose document this takes over.</summary>
    /// <exception cref="ModelFormatException">The file is not JSON, the tensors are missing or invalid, or the format differs.</exception>
    public static ModelDocument Open(ModelInput input, string format, string what, Func<JsonElement, JsonSource, string> tensorPathOf)
    {
        ArgumentNullException.ThrowIfNull(input);
        return Open(input.TakeJson(), input.Path, format, what, tensorPathOf);
    }

    private static ModelDocument Open(JsonDocument doc, string jsonPath, string format, string what, Func<JsonElement, JsonSource, string> tensorPathOf)
    {
        try
        {
            var src = new JsonSource(jsonPath);
            var root = doc.RootElement;
            // Fields a reader does not know are ignored, so a writer may record more over time; known fields are checked
            // strictly where they are read.
            src.RequireOpenObject(root, null, what);
            var found = src.String(src.Required(root, "format", null, what), "format", "'format'");
            if (found != format) throw src.Fail("format", $"unsupported format '{found}' (this reader reads '{format}')");
            var tensorPath = tensorPathOf(root, src);
            return new ModelDocument(doc, src, tensorPath, SafeTensors.ReadContent(tensorPath).Tensors);
        }
        catch
        {
            doc.Dispose();
            throw;
        }
    }

    /// <summary>The <c>format</c> field of a JSON file, or null when it has none (used to tell the formats apart).</summary>
    /// <exception cref="ModelFormatException">The file is missing or is not a JSON object.</exception>
    public static string? FormatOf(string jsonPath)
    {
        using var doc = JsonSource.ParseFile(jsonPath);
        var src = new JsonSource(jsonPath);
        src.RequireOpenObject(doc.RootElement, null, "a model file");
        return JsonSource.TryGetNonNull(doc.RootElement, "format", out var f) ? src.String(f, "format", "'format'") : null;
    }

    /// <summary>The tensor called <paramref name="key"/>, named by the JSON field <paramref name="field"/>.</summary>
    public Tensor Named(string key, string field) => NamedEntry(key, field).Value;

    /// <summary>The tensor called <paramref name="key"/> with its key, named by the JSON field <paramref name="field"/>.</summary>
    public KeyValuePair<string, Tensor> NamedEntry(string key, string field)
        => _tensors.TryGetValue(key, out var t) ? new(key, t)
            : throw Src.Fail(field, $"names the tensor '{key}', which {Path.GetFileName(TensorPath)} does not hold");

    /// <summary>The root graph (null when the field is null or absent).</summary>
    public Graph? Forward()
        => JsonSource.TryGetNonNull(Root, "forward", out var f) ? GraphJson.Read(f, Src, "forward") : null;

    /// <summary>Reads a module tree whose tensors carry <paramref name="prefix"/>, attaches the root graph, and checks
    /// that every tensor with that prefix was used.</summary>
    public Module Tree(JsonElement e, string prefix, Graph? forward)
    {
        var source = new TensorSource(_tensors, prefix, Src, Path.GetFileName(TensorPath));
        var tree = ModuleJson.TreeName(prefix);
        var m = ModuleJson.AttachForward(ModuleJson.Read(e, source, Src, tree), forward, Src, tree);
        source.RequireAllUsed();
        return m;
    }

    /// <summary>Writes a module tree and its root graph as the <c>model</c> and <c>forward</c> fields.</summary>
    public static void WriteModel(Utf8JsonWriter w, Module model, string fileName)
    {
        w.WritePropertyName("model");
        ModuleJson.Write(w, model, fileName, "model");
        w.WritePropertyName("forward");
        if (model is Layers.UserModule { Forward: { } g }) GraphJson.Write(w, g, fileName);
        else w.WriteNullValue();
    }

    /// <summary>Serialises both files first (so a model that cannot be written leaves no file behind), then writes them
    /// as a pair (<see cref="OutputFile.WriteAll"/>: both or neither), the tensors renamed into place first so the JSON
    /// never names a file that is not there.</summary>
    public static void WritePair(string jsonPath, string tensorPath, Action<Utf8JsonWriter> writeJson,
        IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, JsonOut.Indented)) writeJson(w);
        ms.WriteByte((byte)'\n');
        var prepared = SafeTensors.Prepare(tensors, metadata, tensorPath);
        var jsonBytes = ms.ToArray();
        // The JSON names its tensors file relative to its own folder. A JSON target that is a link into another folder
        // would put the JSON there and the tensors here: a pair that reads back from neither place (found by Fuzz.Writers).
        var jsonReal = OutputFile.Target(jsonPath);
        string folderReal;
        try { folderReal = RealPath.Of(Path.GetDirectoryName(jsonPath) is { Length: > 0 } d ? d : "."); }
        catch (IOException) { folderReal = Path.GetDirectoryName(jsonReal) ?? ""; }
        if (!string.Equals(Path.GetDirectoryName(jsonReal), folderReal, StringComparison.Ordinal))
            throw new ModelFormatException(jsonPath, null,
                $"cannot write the file: it is a symbolic link to {jsonReal}, in another folder, and the pair's tensors " +
                $"({Path.GetFileName(tensorPath)}) would be written apart from it; give the real path; nothing was written");
        OutputFile.WriteAll([(tensorPath, prepared.WriteTo), (jsonPath, s => s.Write(jsonBytes))]);
    }
}
