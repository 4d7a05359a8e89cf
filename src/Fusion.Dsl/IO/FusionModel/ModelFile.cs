using System.Collections.Immutable;
using System.Text.Json;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.IO;

/// <summary>A model read from a <c>fusion-model/1</c> file.</summary>
/// <param name="Name">The <c>name</c> field (the file stem when absent).</param>
/// <param name="Model">The module tree (a user-defined root carries the forward graph).</param>
/// <param name="InputShape">The <c>input_shape</c> field: an example input shape for probing and export, or empty.</param>
public sealed record ModelFileContent(string Name, Module Model, ImmutableArray<int> InputShape)
{
    /// <summary>The safetensors file the <c>state_dict</c> field named, as read (a full path), so that a tool can tell
    /// which files the model came from; null when the content was not read from a file.</summary>
    public string? TensorFile { get; init; }

    /// <summary>The tensors of <see cref="TensorFile"/> in file order, as decoded: the model's own state_dict, so that
    /// loading the same file again (<c>--weights</c>) needs no second decoding.</summary>
    public IReadOnlyList<KeyValuePair<string, Tensors.Tensor>> StateDict { get; init; } = [];
}

/// <summary>
/// The project's own model format, <c>fusion-model/1</c> (docs/model-format.md): <c>NAME.json</c> holds the module tree
/// with PyTorch's type names and constructor arguments and the root's torch.fx graph, and <c>NAME.safetensors</c> beside
/// it holds the <c>state_dict</c> under PyTorch's own keys and nothing else, so that PyTorch's
/// <c>load_state_dict(..., strict=True)</c> takes it as it is. Written by <c>python -m fusion_torch export</c> and
/// <c>fusion fuse --out</c>; read by every command that takes a model.
/// </summary>
public static class ModelFile
{
    /// <summary>The <c>format</c> string of this format.</summary>
    public const string Format = "fusion-model/1";

    /// <summary>The JSON file name used when a directory is given.</summary>
    public const string DefaultFileName = "model.json";

    private const string What = "a fusion-model file";

    /// <summary>
    /// The JSON file that <paramref name="path"/> denotes: the path itself for a <c>.json</c> file or an existing file,
    /// <c>DIR/model.json</c> for anything else (a directory, existing or to be created, as the Python exporter reads it).
    /// </summary>
    /// <exception cref="ModelFormatException">The path is empty (it would mean <c>model.json</c> in the current folder).</exception>
    public static string JsonPathFor(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) throw new ModelFormatException("''", null, "the path is empty; name a .json file or a folder");
        var isFile = !Directory.Exists(path) && (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || File.Exists(path));
        return isFile ? path : Path.Combine(path, DefaultFileName);
    }

    /// <summary>The safetensors file written beside <paramref name="jsonPath"/>.</summary>
    public static string TensorPathFor(string jsonPath)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        if (jsonPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ModelFormatException(jsonPath, null, "give the .json file of the pair; its state_dict is read from the .safetensors file it names");
        return Path.ChangeExtension(jsonPath, ".safetensors");
    }

    /// <summary>
    /// Writes <paramref name="model"/> as <c>NAME.json</c> + <c>NAME.safetensors</c> (or <c>DIR/model.json</c> +
    /// <c>DIR/model.safetensors</c> for a directory). Both files are serialised before either is written, then written
    /// as a pair (<see cref="OutputFile.WriteAll"/>): on a failure the old pair, if any, is left as it was.
    /// </summary>
    /// <param name="path">The <c>.json</c> file or a directory.</param>
    /// <param name="model">The model.</param>
    /// <param name="inputShape">An example input shape to record, or null.</param>
    /// <param name="description">Free text to record, or null.</param>
    /// <returns>The JSON file written.</returns>
    /// <exception cref="ModelFormatException">The model cannot be represented (hooks, a forward graph below the root) or a file cannot be written.</exception>
    public static string Write(string path, Module model, IReadOnlyList<int>? inputShape = null, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var jsonPath = JsonPathFor(path);
        var tensorPath = TensorPathFor(jsonPath);
        var name = Path.GetFileNameWithoutExtension(jsonPath);
        if (Path.GetDirectoryName(Path.GetFullPath(jsonPath)) is { } folder && !Directory.Exists(folder))
        {
            try { Directory.CreateDirectory(folder); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
            {
                throw new ModelFormatException(jsonPath, null, $"cannot create the folder {folder}: {e.Message}", e);
            }
        }
        ModelDocument.WritePair(jsonPath, tensorPath, w =>
        {
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteString("name", name);
            if (description is not null) w.WriteString("description", description);
            ModelDocument.WriteModel(w, model, jsonPath);
            w.WriteString("state_dict", Path.GetFileName(tensorPath));
            if (inputShape is not null)
            {
                w.WriteStartArray("input_shape");
                foreach (var d in inputShape) w.WriteNumberValue(d);
                w.WriteEndArray();
            }
            w.WriteEndObject();
        }, model.StateDict(), new Dictionary<string, string> { ["format"] = "pt" });
        return jsonPath;
    }

    /// <summary>The <c>format</c> field of a JSON model file (<c>fusion-model/1</c>, <c>fusion-fixture/1</c>, ...), or null when it
    /// has none, so a tool can tell the formats apart before reading one (a directory means its <c>model.json</c>).</summary>
    /// <exception cref="ModelFormatException">The file is missing or is not a JSON object.</exception>
    public static string? FormatOf(string path) => ModelDocument.FormatOf(JsonPathFor(path));

    /// <summary>Reads the model of a <c>fusion-model/1</c> file (the <c>.json</c> path or a directory holding <c>model.json</c>).</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the state_dict does not match the tree.</exception>
    public static Module Read(string path) => ReadContent(path).Model;

    /// <summary>Reads the model with its name and example input shape.</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the state_dict does not match the tree.</exception>
    public static ModelFileContent ReadContent(string path)
    {
        var jsonPath = JsonPathFor(path);
        if (!ReferenceEquals(jsonPath, path) && !File.Exists(jsonPath))
            throw new ModelFormatException(path, null, $"is a directory holding no {DefaultFileName}; give a model's .json file or a directory with {DefaultFileName}");
        using var input = ModelInput.Open(jsonPath, ModelFileFormat.Json);
        return ReadContent(input);
    }

    /// <summary>Reads the model of a <c>fusion-model/1</c> file already opened (<see cref="ModelInput.Open"/>), parsing its
    /// JSON no second time.</summary>
    /// <exception cref="ModelFormatException">The file is not this format's JSON, the tensors are missing or invalid, or
    /// the state_dict does not match the tree.</exception>
    public static ModelFileContent ReadContent(ModelInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var jsonPath = input.Path;
        using var f = ModelDocument.Open(input, Format, What, StateDictPath(jsonPath));
        var src = f.Src;
        var root = f.Root;
        var name = JsonSource.TryGetNonNull(root, "name", out var n) ? src.String(n, "name", "'name'") : Path.GetFileNameWithoutExtension(jsonPath);
        var model = f.Tree(src.Required(root, "model", null, What), "", f.Forward());
        var shape = ImmutableArray<int>.Empty;
        if (JsonSource.TryGetNonNull(root, "input_shape", out var s))
        {
            if (s.ValueKind != JsonValueKind.Array) throw src.Fail("input_shape", $"must be a list of positive integers, got {JsonSource.Describe(s)}");
            shape = s.EnumerateArray().Select((d, i) => src.Int(d, $"input_shape[{i}]", "a dimension") is var v && v > 0
                ? v : throw src.Fail($"input_shape[{i}]", $"must be a positive integer, got {v}")).ToImmutableArray();
            if (Tensors.Limits.ElementCount(shape.AsSpan()) is null)
                throw src.Fail("input_shape", $"[{string.Join(", ", shape)}] has more than the limit of {Tensors.Limits.MaxElements:N0} elements per tensor");
        }
        return new ModelFileContent(name, model, shape) { TensorFile = f.TensorPath, StateDict = f.InFileOrder };
    }

    /// <summary>The <c>state_dict</c> field: a file name beside the JSON, never a path elsewhere.</summary>
    private static Func<JsonElement, JsonSource, string> StateDictPath(string jsonPath) => (root, src) =>
    {
        var file = src.String(src.Required(root, "state_dict", null, What), "state_dict", "'state_dict'");
        if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or "..")
            throw src.Fail("state_dict", $"must name a file beside the JSON file (no directory part), got '{file}'");
        return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(jsonPath))!, file);
    };
}
