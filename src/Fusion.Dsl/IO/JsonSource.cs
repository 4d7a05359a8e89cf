using System.Globalization;
using System.Text.Json;

namespace Fusion.Dsl.IO;

/// <summary>
/// Reading helpers bound to one source file: every accessor checks the JSON kind it needs and reports a mismatch as a
/// <see cref="ModelFormatException"/> naming the file, the location and what was found. Locations are dotted
/// (<c>expect.rtol</c>, <c>model.features.0</c>, <c>forward[3]</c>).
/// </summary>
internal sealed class JsonSource(string fileName)
{
    /// <summary>Nesting allowed in a document: module trees nest three JSON levels per module level.</summary>
    private const int MaxDepth = 1024;

    public string FileName { get; } = fileName;

    public ModelFormatException Fail(string? location, string problem, Exception? inner = null) => new(FileName, location, problem, inner);

    /// <summary>Reads and parses a JSON file, reporting I/O and syntax errors against the file.</summary>
    public static JsonDocument ParseFile(string path)
    {
        return Parse(BoundedFile.ReadAllBytes(path, BoundedFile.MaxJsonBytes, "a JSON file"), path);
    }

    /// <summary>Parses JSON text (UTF-8 bytes), reporting syntax errors against <paramref name="fileName"/>.</summary>
    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string fileName)
    {
        // Editors on Windows may prepend a byte-order mark, which the JSON parser does not accept.
        if (utf8.Span.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) utf8 = utf8[3..];
        // The JSON reader checks string contents only when they are read; check the encoding once, up front.
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
            throw new ModelFormatException(fileName, null, "not valid UTF-8 text");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, new JsonDocumentOptions { MaxDepth = MaxDepth, CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(fileName, null, $"not valid JSON: {e.Message}", e);
        }
        RequireDecodable(doc, fileName);
        return doc;
    }

    /// <summary>
    /// An escape such as <c>"\ud800"</c> (a lone surrogate) is valid JSON syntax but no string: the reader throws only
    /// when the value is read. Every string and name is decoded once here, so that no later read can fail that way.
    /// </summary>
    /// <exception cref="ModelFormatException">One does not decode; <paramref name="doc"/> is then disposed.</exception>
    internal static void RequireDecodable(JsonDocument doc, string fileName)
    {
        if (FirstUndecodable(doc.RootElement, "") is not { } where) return;
        doc.Dispose();
        throw new ModelFormatException(fileName, where.Length == 0 ? null : where, "holds a string escape that is not valid Unicode (a lone surrogate such as \\ud800)");
    }

    /// <summary>The location of the first string or property name that does not decode, or null.</summary>
    private static string? FirstUndecodable(JsonElement e, string location)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                try { e.GetString(); }
                catch (InvalidOperationException) { return location; }
                return null;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var x in e.EnumerateArray())
                    if (FirstUndecodable(x, $"{location}[{i++}]") is { } bad) return bad;
                return null;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { return location; }
                    if (FirstUndecodable(p.Value, location.Length == 0 ? name : location + "." + name) is { } bad) return bad;
                }
                return null;
            default:
                return null;
        }
    }

    /// <summary>Parses JSON text, reporting syntax errors against <paramref name="fileName"/>.</summary>
    public static JsonDocument Parse(string text, string fileName) => Parse(SafeTensors.Utf8.GetBytes(text), fileName);

    public static string Describe(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => $"the string \"{e.GetString()}\"",
        JsonValueKind.Number => $"the number {e.GetRawText()}",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Null => "null",
        _ => e.ValueKind.ToString(),
    };

    /// <summary>Checks that <paramref name="obj"/> is an object whose fields are all among <paramref name="allowed"/>, each once.</summary>
    public void RequireObject(JsonElement obj, string? location, string what, params string[] allowed)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw Fail(location, $"{what} must be an object, got {Describe(obj)}");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw Fail(location, $"{what} has the field '{p.Name}' twice");
            if (Array.IndexOf(allowed, p.Name) < 0)
                throw Fail(location, $"{what} has an unknown field '{p.Name}' (known: {string.Join(", ", allowed)})");
        }
    }

    /// <summary>
    /// Checks that <paramref name="obj"/> is an object with no field given twice, accepting any field names: for the parts
    /// of a document where fields may be added by newer generators (the top level, <c>expect</c>), which readers ignore.
    /// </summary>
    public void RequireOpenObject(JsonElement obj, string? location, string what)
    {
        if (obj.ValueKind != JsonValueKind.Object) throw Fail(location, $"{what} must be an object, got {Describe(obj)}");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in obj.EnumerateObject())
            if (!seen.Add(p.Name)) throw Fail(location, $"{what} has the field '{p.Name}' twice");
    }

    /// <summary>The field <paramref name="name"/>, absent or null giving false.</summary>
    public static bool TryGetNonNull(JsonElement obj, string name, out JsonElement value)
        => obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null;

    /// <summary>The field <paramref name="name"/>; its absence is reported at <c>location.name</c>.</summary>
    public JsonElement Required(JsonElement obj, string name, string? location, string what)
        => obj.TryGetProperty(name, out var v) ? v : throw Fail(location is null ? name : location + "." + name, $"{what} has no field '{name}'");

    public string String(JsonElement e, string? location, string what)
        => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Fail(location, $"{what} must be a string, got {Describe(e)}");

    public bool Bool(JsonElement e, string? location, string what) => e.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Fail(location, $"{what} must be true or false, got {Describe(e)}"),
    };

    public int Int(JsonElement e, string? location, string what)
        => e.ValueKind == JsonValueKind.Number && IsIntegerLiteral(e) && e.TryGetInt32(out var v)
            ? v : throw Fail(location, $"{what} must be a 32-bit integer, got {Describe(e)}");

    public double Double(JsonElement e, string? location, string what)
        => e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var v) && double.IsFinite(v)
            ? v : throw Fail(location, $"{what} must be a finite number, got {Describe(e)}");

    /// <summary>Whether a number is written as an integer (no fraction, no exponent), which is how Python writes an <c>int</c>.</summary>
    public static bool IsIntegerLiteral(JsonElement number)
    {
        var raw = number.GetRawText();
        return raw.IndexOfAny(['.', 'e', 'E']) < 0;
    }
}

/// <summary>Writing helpers shared by the JSON writers.</summary>
internal static class JsonOut
{
    /// <summary>Indentation like the fixture generator's <c>json.dump(..., indent=1)</c>.</summary>
    public static readonly JsonWriterOptions Indented = new() { Indented = true, IndentSize = 1 };

    /// <summary>
    /// Writes a double so that it reads back as a double: Python-style shortest round-trip text that always carries a
    /// fraction or an exponent (<c>2.0</c>, <c>1e-05</c>), since an integer literal means <c>int</c> in this format.
    /// </summary>
    public static void Double(Utf8JsonWriter w, double d, string fileName, string? location)
    {
        if (!double.IsFinite(d))
            throw new ModelFormatException(fileName, location, $"the value {d} cannot be written: JSON has no NaN or infinity");
        var s = d.ToString("R", CultureInfo.InvariantCulture);
        // .NET's shortest form does not always round-trip (2^-25 prints as 2.980232238769531E-08, which parses to the
        // double below it); fall back to 17 significant digits, which always does.
        if (double.Parse(s, CultureInfo.InvariantCulture) != d) s = d.ToString("G17", CultureInfo.InvariantCulture);
        s = s.Replace('E', 'e');
        if (s.IndexOfAny(['.', 'e']) < 0) s += ".0";
        w.WriteRawValue(s, skipInputValidation: true);
    }

    /// <summary>Writes a module argument or a graph constant: null, bool, integers, doubles, strings and lists of them.</summary>
    public static void Value(Utf8JsonWriter w, object? value, string fileName, string? location)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case double d: Double(w, d, fileName, location); break;
            case float f: Double(w, f, fileName, location); break;
            case string s: w.WriteStringValue(s); break;
            case System.Collections.IEnumerable items:
                w.WriteStartArray();
                foreach (var item in items) Value(w, item, fileName, location);
                w.WriteEndArray();
                break;
            default:
                throw new ModelFormatException(fileName, location, $"a value of type {value.GetType().Name} cannot be written to JSON");
        }
    }
}
