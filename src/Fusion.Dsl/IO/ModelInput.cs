using System.Text.Json;

namespace Fusion.Dsl.IO;

/// <summary>
/// A model file opened once: its format told by content (<see cref="ModelFileKind"/>), a JSON file already parsed, any
/// other kept open for its reader. Every reader that takes one (<see cref="ModelFile.ReadContent(ModelInput)"/>, the
/// conformance and ONNX readers) continues from here, so a command reads and parses each file once.
/// </summary>
public sealed class ModelInput : IDisposable
{
    private readonly InputFile _file;
    private JsonDocument? _json;

    private ModelInput(string path, InputFile file, ModelFileFormat format, JsonDocument? json, string? jsonFormat)
    {
        Path = path;
        _file = file;
        Format = format;
        _json = json;
        JsonFormat = jsonFormat;
    }

    /// <summary>The file read: the path given, or <c>DIR/model.json</c> for a directory.</summary>
    public string Path { get; }

    /// <summary>The file's format: by content, else by extension, unless the caller named it.</summary>
    public ModelFileFormat Format { get; }

    /// <summary>The <c>format</c> field of a JSON object (<c>fusion-model/1</c>, <c>fusion-fixture/1</c>), or null when the
    /// file is not JSON or has no such string field.</summary>
    public string? JsonFormat { get; }

    /// <summary>
    /// Opens <paramref name="path"/> (a directory means its <c>model.json</c>) and tells its format from its first bytes, or
    /// takes <paramref name="format"/> when given (an override: the content is then not looked at). A JSON file is read and
    /// parsed whole; any other is left open, unread past its first bytes.
    /// </summary>
    /// <exception cref="ModelFormatException">The file is missing, empty or not a regular file, a directory holds no
    /// <c>model.json</c>, or a JSON file is too large or not valid JSON.</exception>
    public static ModelInput Open(string path, ModelFileFormat? format = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        var file = path;
        if (path.Length > 0 && Directory.Exists(path))
        {
            file = System.IO.Path.Combine(path, ModelFile.DefaultFileName);
            if (!File.Exists(file))
                throw new ModelFormatException(path, null, $"is a directory holding no {ModelFile.DefaultFileName}; give a model file or a directory with {ModelFile.DefaultFileName}");
        }
        var input = InputFile.Open(file);
        try
        {
            var kind = format ?? ModelFileKind.Of(input.Peek(ModelFileKind.HeadBytes), input.Length, file);
            if (kind != ModelFileFormat.Json) return new ModelInput(file, input, kind, null, null);
            var doc = JsonSource.Parse(BoundedFile.ReadAll(input, file, BoundedFile.MaxJsonBytes, "a JSON file"), file);
            var root = doc.RootElement;
            var jsonFormat = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("format", out var f) && f.ValueKind == JsonValueKind.String
                ? f.GetString() : null;
            return new ModelInput(file, input, kind, doc, jsonFormat);
        }
        catch
        {
            input.Dispose();
            throw;
        }
    }

    /// <summary>Reads the whole file (at most <see cref="BoundedFile.MaxTensorFileBytes"/>), for a reader that parses bytes.</summary>
    /// <exception cref="ModelFormatException">The file is larger than the limit or cannot be read.</exception>
    public byte[] ReadAll() => BoundedFile.ReadAll(_file, Path, BoundedFile.MaxTensorFileBytes, "a model file");

    /// <summary>Hands the parsed JSON document to a reader, which then owns it.</summary>
    /// <exception cref="ModelFormatException">The file is not JSON.</exception>
    internal JsonDocument TakeJson()
    {
        if (Format != ModelFileFormat.Json) throw new ModelFormatException(Path, null, $"is not a JSON file (its content is {Format})");
        var doc = _json ?? throw new InvalidOperationException($"the JSON document of {Path} was already taken by a reader");
        _json = null;
        return doc;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _json?.Dispose();
        _file.Dispose();
    }
}
