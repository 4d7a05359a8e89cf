using System.Buffers.Binary;

namespace Fusion.Dsl.IO;

/// <summary>
/// Tells the format of a model or weights file from its first bytes (at most <see cref="HeadBytes"/>), the one place that
/// decides it: a zip whose first entry is <c>data.pkl</c> is a <c>torch.save</c> checkpoint, an 8-byte length followed by
/// a JSON header is safetensors, a JSON object is this project's own format (its <c>format</c> field says which), and a
/// protobuf <c>ModelProto</c> is ONNX. The extension is only a hint: its format is tried first, and it is the answer only
/// when the content matches no format, so that the reader it names can say what is wrong with the file.
/// </summary>
public static class ModelFileKind
{
    /// <summary>The bytes read from the start of a file to tell its format.</summary>
    public const int HeadBytes = 4096;

    private static readonly ModelFileFormat[] ContentOrder =
        [ModelFileFormat.TorchCheckpoint, ModelFileFormat.SafeTensors, ModelFileFormat.Json, ModelFileFormat.Onnx];

    /// <summary>The format of the file at <paramref name="path"/>, by its first bytes (see the type's summary).</summary>
    /// <exception cref="ModelFormatException">The file is missing, empty, a directory or not a regular file.</exception>
    public static ModelFileFormat Of(string path)
    {
        using var file = InputFile.Open(path);
        return Of(file.Peek(HeadBytes), file.Length, path);
    }

    /// <summary>The format the extension of <paramref name="path"/> suggests (<c>.json</c>, <c>.pt</c>/<c>.pth</c>,
    /// <c>.safetensors</c>, <c>.onnx</c>), or <see cref="ModelFileFormat.Unknown"/>.</summary>
    public static ModelFileFormat ByExtension(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".json" => ModelFileFormat.Json,
            ".pt" or ".pth" => ModelFileFormat.TorchCheckpoint,
            ".safetensors" => ModelFileFormat.SafeTensors,
            ".onnx" => ModelFileFormat.Onnx,
            _ => ModelFileFormat.Unknown,
        };
    }

    /// <summary>The format by content, else by the extension of <paramref name="path"/>.</summary>
    internal static ModelFileFormat Of(ReadOnlySpan<byte> head, long length, string path)
        => ByContent(head, length, path) is var f && f != ModelFileFormat.Unknown ? f : ByExtension(path);

    /// <summary>The format the content claims, the extension's format tried first; <see cref="ModelFileFormat.Unknown"/>
    /// when no format claims it.</summary>
    internal static ModelFileFormat ByContent(ReadOnlySpan<byte> head, long length, string path)
    {
        var hint = ByExtension(path);
        if (hint != ModelFileFormat.Unknown && Claims(hint, head, length)) return hint;
        foreach (var f in ContentOrder)
            if (f != hint && Claims(f, head, length)) return f;
        return ModelFileFormat.Unknown;
    }

    private static bool Claims(ModelFileFormat format, ReadOnlySpan<byte> head, long length) => format switch
    {
        ModelFileFormat.TorchCheckpoint => IsTorchSave(head),
        ModelFileFormat.SafeTensors => IsSafeTensors(head, length),
        ModelFileFormat.Json => IsJsonObject(head),
        ModelFileFormat.Onnx => IsModelProto(head, length),
        _ => false,
    };

    /// <summary>A zip whose first local entry is <c>FOLDER/data.pkl</c>, as torch.save writes it first; or the legacy
    /// format's magic number (read so that its reader can ask for a re-save).</summary>
    private static bool IsTorchSave(ReadOnlySpan<byte> head)
    {
        if (!TorchCheckpoint.Claims(head)) return false;
        if (!head.StartsWith("PK\x03\x04"u8)) return true;
        if (head.Length < 30) return false;
        var nameLength = BinaryPrimitives.ReadUInt16LittleEndian(head[26..]);
        return head.Length >= 30 + nameLength && head.Slice(30, nameLength).EndsWith("data.pkl"u8);
    }

    /// <summary>An 8-byte little-endian header length that fits in the file, then <c>{</c>.</summary>
    private static bool IsSafeTensors(ReadOnlySpan<byte> head, long length)
        => head.Length > 8 && BinaryPrimitives.ReadUInt64LittleEndian(head) is var n && n >= 2 && n <= (ulong)(length - 8) && head[8] == (byte)'{';

    /// <summary>Optional byte-order mark and white space, then <c>{</c>.</summary>
    private static bool IsJsonObject(ReadOnlySpan<byte> head)
    {
        if (head.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) head = head[3..];
        var i = 0;
        while (i < head.Length && head[i] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') i++;
        return i < head.Length && head[i] == (byte)'{';
    }

    // ONNX has no magic number. A file is taken for a ModelProto when the fields that fit in its first bytes all parse as
    // ModelProto's own, each with its wire type (1 ir_version and 5 model_version varints; 2-4 producer and domain, 6
    // doc_string, 7 graph, 8 opset_import, 14 metadata_props, 20 training_info, 25 functions, 26 configuration
    // length-delimited, each length inside the file), and one of them is ir_version, graph or opset_import; the scan stops
    // at the first field that runs past the bytes read. Exporters write ir_version first, and text, JSON, zip and
    // safetensors files fail on their first or second byte, so the check is tried after theirs.
    private static bool IsModelProto(ReadOnlySpan<byte> head, long length)
    {
        var pos = 0;
        var essential = false;
        while (pos < head.Length)
        {
            if (!TryVarint(head, ref pos, out var tag)) return essential && pos >= head.Length;
            var (field, wire) = (tag >> 3, (int)(tag & 7));
            var expected = field switch
            {
                1 or 5 => 0,
                2 or 3 or 4 or 6 or 7 or 8 or 14 or 20 or 25 or 26 => 2,
                _ => -1,
            };
            if (expected < 0 || wire != expected) return false;
            essential |= field is 1 or 7 or 8;
            if (!TryVarint(head, ref pos, out var value)) return essential && pos >= head.Length;
            if (wire == 2)
            {
                if (value > (ulong)(length - pos)) return false;
                if (value > (ulong)(head.Length - pos)) return essential;
                pos += (int)value;
            }
        }
        return essential;
    }

    /// <summary>Reads a protobuf varint (at most 10 bytes); false when the bytes end first or it is longer.</summary>
    private static bool TryVarint(ReadOnlySpan<byte> bytes, ref int pos, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 70 && pos < bytes.Length; shift += 7)
        {
            var b = bytes[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return true;
        }
        return false;
    }
}
