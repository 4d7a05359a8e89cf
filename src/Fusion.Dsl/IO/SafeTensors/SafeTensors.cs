using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>The tensors and the <c>__metadata__</c> strings of a safetensors file.</summary>
/// <param name="Tensors">The tensors in file order (by data offset).</param>
/// <param name="Metadata">The <c>__metadata__</c> entries (empty when the file has none).</param>
public sealed record SafeTensorsContent(
    IReadOnlyList<KeyValuePair<string, Tensor>> Tensors,
    IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length, a JSON header mapping each key to
/// <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (offsets relative to the data section), an optional
/// <c>__metadata__</c> object of strings, then the raw little-endian data. Only <c>F32</c> and <c>I64</c> are supported.
/// Reading validates the whole file before returning anything, with the checks of the reference implementation
/// (offsets in range, contiguous, non-overlapping, each tensor's byte size equal to its shape times its element size,
/// no trailing bytes, unique keys); every problem is a <see cref="ModelFormatException"/> naming the file and the key.
/// </summary>
public static class SafeTensors
{
    /// <summary>Upper bound on the header length, the reference implementation's limit (a guard against absurd lengths).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    /// <summary>Reads a safetensors file; the tensors come in file order.</summary>
    /// <exception cref="ModelFormatException">The file cannot be read or is not a valid F32/I64 safetensors file.</exception>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Read(string path) => ReadContent(path).Tensors;

    /// <summary>Reads safetensors data from a stream (read to its end); <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The data cannot be read or is not valid.</exception>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Read(Stream stream, string sourceName) => ReadContent(stream, sourceName).Tensors;

    /// <summary>Reads safetensors data from memory; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The data is not valid.</exception>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Read(ReadOnlySpan<byte> bytes, string sourceName) => ReadContent(bytes, sourceName).Tensors;

    /// <summary>Reads a safetensors file with its metadata.</summary>
    /// <exception cref="ModelFormatException">The file cannot be read or is not valid.</exception>
    public static SafeTensorsContent ReadContent(string path)
    {
        using var file = InputFile.Open(path);
        return ReadContent(file, path);
    }

    /// <summary>
    /// Reads an open safetensors file streamed: the header first, then each tensor's bytes straight into the tensor, so a
    /// file past 2 GiB (regnet_y_128gf's and vit_h_14's weights) reads, and nothing but the tensors is held in memory.
    /// </summary>
    internal static SafeTensorsContent ReadContent(InputFile file, string path)
    {
        // Written for little-endian memory; a big-endian machine decodes from one buffer (files below 2 GiB).
        if (!BitConverter.IsLittleEndian) return ReadContent(file.ReadAll(path), path);
        var stream = file.Stream;
        try
        {
            if (file.Length < 8)
                throw new ModelFormatException(path, null, $"file of {file.Length} bytes is too short for the 8-byte header length (truncated or not a safetensors file)");
            Span<byte> prefix = stackalloc byte[8];
            stream.Position = 0;
            stream.ReadExactly(prefix);
            var headerLength = CheckHeaderLength(BinaryPrimitives.ReadUInt64LittleEndian(prefix), file.Length - 8, path);
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            var dataStart = 8 + headerLength;
            var (ordered, metadata) = Layout(header, file.Length - dataStart, path);
            BoundedFile.RequireMemory(path, null, file.Length - dataStart);
            var tensors = new KeyValuePair<string, Tensor>[ordered.Count];
            for (var i = 0; i < ordered.Count; i++)
            {
                var e = ordered[i];
                stream.Position = dataStart + e.Begin;
                Tensor t;
                if (e.DType == DType.Float32) t = Tensor.Create(elements => stream.ReadExactly(MemoryMarshal.AsBytes(elements)), e.Shape);
                else
                {
                    var longs = new long[(e.End - e.Begin) / 8];
                    stream.ReadExactly(MemoryMarshal.AsBytes(longs.AsSpan()));
                    t = Tensor.Adopt(longs, e.Shape);
                }
                tensors[i] = new(e.Key, t);
            }
            return new SafeTensorsContent(Array.AsReadOnly(tensors), metadata);
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {e.Message}", e);
        }
    }

    private static int CheckHeaderLength(ulong headerLength, long available, string sourceName)
    {
        if (headerLength > MaxHeaderBytes)
            throw new ModelFormatException(sourceName, null, $"header length {headerLength} exceeds the limit of {MaxHeaderBytes} bytes (corrupt or not a safetensors file)");
        if ((long)headerLength > available)
            throw new ModelFormatException(sourceName, null, $"header length {headerLength} runs past the end of the file ({available} bytes after the length field; truncated file?)");
        return (int)headerLength;
    }

    /// <summary>Reads safetensors data with its metadata from a stream (read to its end).</summary>
    /// <exception cref="ModelFormatException">The data cannot be read or is not valid.</exception>
    public static SafeTensorsContent ReadContent(Stream stream, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        byte[] bytes;
        try
        {
            // Bounded like a file: an endless stream is refused once it passes the limit, not read until memory runs out.
            using var ms = new MemoryStream();
            var buffer = new byte[1 << 16];
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (ms.Length + n > BoundedFile.MaxTensorFileBytes)
                    throw new ModelFormatException(sourceName, null, $"the stream holds more than the limit of {BoundedFile.MaxTensorFileBytes:N0} bytes");
                ms.Write(buffer, 0, n);
            }
            bytes = ms.ToArray();
        }
        catch (Exception e) when (e is IOException or NotSupportedException or ObjectDisposedException)
        {
            throw new ModelFormatException(sourceName, null, $"cannot read the stream: {e.Message}", e);
        }
        return ReadContent(bytes, sourceName);
    }

    /// <summary>Reads safetensors data with its metadata from memory.</summary>
    /// <exception cref="ModelFormatException">The data is not valid.</exception>
    public static SafeTensorsContent ReadContent(ReadOnlySpan<byte> bytes, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(sourceName);
        if (bytes.Length < 8)
            throw new ModelFormatException(sourceName, null, $"file of {bytes.Length} bytes is too short for the 8-byte header length (truncated or not a safetensors file)");
        var headerLength = CheckHeaderLength(BinaryPrimitives.ReadUInt64LittleEndian(bytes), bytes.Length - 8, sourceName);
        var data = bytes[(8 + headerLength)..];
        var (ordered, metadata) = Layout(bytes.Slice(8, headerLength), data.Length, sourceName);

        var tensors = new KeyValuePair<string, Tensor>[ordered.Count];
        for (var i = 0; i < ordered.Count; i++)
        {
            var e = ordered[i];
            tensors[i] = new(e.Key, Decode(data.Slice((int)e.Begin, (int)(e.End - e.Begin)), e.DType, e.Shape));
        }
        return new SafeTensorsContent(Array.AsReadOnly(tensors), metadata);
    }

    /// <summary>The header's tensors in data order and its metadata, with the layout validated against a data section of
    /// <paramref name="dataLength"/> bytes before anything is decoded, so an error never leaves a partial result behind.</summary>
    private static (List<Entry> Ordered, IReadOnlyDictionary<string, string> Metadata) Layout(ReadOnlySpan<byte> header, long dataLength, string sourceName)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new ModelFormatException(sourceName, null, "the header does not start with '{' (not a safetensors file)");
        var entries = ParseHeader(header, sourceName, out var metadata);
        foreach (var e in entries)
            if (e.End > dataLength)
                throw new ModelFormatException(sourceName, e.Key, $"data_offsets [{e.Begin}, {e.End}] run past the end of the data section ({dataLength} bytes; truncated file?)");
        var ordered = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();   // OrderBy is stable: header order breaks ties
        long expectedBegin = 0;
        foreach (var e in ordered)
        {
            if (e.Begin < expectedBegin)
                throw new ModelFormatException(sourceName, e.Key, $"data_offsets [{e.Begin}, {e.End}] overlap the previous tensor, which ends at {expectedBegin}");
            if (e.Begin > expectedBegin)
                throw new ModelFormatException(sourceName, e.Key, $"data_offsets [{e.Begin}, {e.End}] leave a gap after byte {expectedBegin} (tensor data must be contiguous)");
            expectedBegin = e.End;
        }
        if (expectedBegin != dataLength)
            throw new ModelFormatException(sourceName, null, $"{dataLength - expectedBegin} bytes after the last tensor belong to no tensor (the data section is {dataLength} bytes, tensors cover {expectedBegin})");
        return (ordered, metadata);
    }

    /// <summary>
    /// Writes tensors in the order given, with optional metadata, to <paramref name="path"/> through <see cref="OutputFile"/>:
    /// a temporary file beside the target is moved into place, so a failure never leaves a half-written file.
    /// </summary>
    /// <exception cref="ModelFormatException">A key is empty, repeats or is <c>__metadata__</c>, or the target is refused
    /// (a directory, device or pipe) or cannot be written.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var prepared = Prepare(tensors, metadata, path);
        OutputFile.Write(path, prepared.WriteTo);
    }

    /// <summary>The bytes of a safetensors file holding <paramref name="tensors"/> in the order given.</summary>
    /// <exception cref="ModelFormatException">A key is empty, repeats or is <c>__metadata__</c>, or the file would not fit
    /// one buffer (write it to a file with <see cref="Write"/>, which streams).</exception>
    public static byte[] Serialize(IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var prepared = Prepare(tensors, metadata, "<safetensors>");
        if (prepared.Length > Array.MaxLength)
            throw new ModelFormatException("<safetensors>", null, $"the file would be {prepared.Length} bytes, more than one buffer can hold");
        using var ms = new MemoryStream((int)prepared.Length);
        prepared.WriteTo(ms);
        return ms.ToArray();
    }

    /// <summary>A checked safetensors file ready to stream: its header (length, JSON, padding) and its tensors.</summary>
    internal sealed class Prepared(byte[] header, List<KeyValuePair<string, Tensor>> tensors)
    {
        /// <summary>The file's size in bytes.</summary>
        public long Length => header.Length + tensors.Sum(kv => kv.Value.ByteCount);

        /// <summary>Writes the file: the header, then each tensor's bytes straight from its storage (no copy of the
        /// weights is built, so files past 2 GiB write).</summary>
        public void WriteTo(Stream stream)
        {
            stream.Write(header);
            var chunk = BitConverter.IsLittleEndian ? null : new byte[1 << 16];
            foreach (var (_, t) in tensors)
            {
                if (chunk is null)
                {
                    stream.Write(t.DType == DType.Float32 ? MemoryMarshal.AsBytes(t.Float32) : MemoryMarshal.AsBytes(t.Int64));
                    continue;
                }
                var bytes = new byte[t.ByteCount];
                Encode(t, bytes);
                stream.Write(bytes);
            }
        }
    }

    /// <summary>Checks the keys and builds the header of a file holding <paramref name="tensors"/> in the order given.</summary>
    /// <exception cref="ModelFormatException">A key is empty, repeats or is <c>__metadata__</c>.</exception>
    internal static Prepared Prepare(IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var list = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, t) in list)
        {
            if (string.IsNullOrEmpty(key)) throw new ModelFormatException(sourceName, key, "a tensor key must not be empty");
            if (key == MetadataKey) throw new ModelFormatException(sourceName, key, $"'{MetadataKey}' is reserved for metadata and cannot name a tensor");
            if (t is null) throw new ModelFormatException(sourceName, key, "the tensor is null");
            if (!seen.Add(key)) throw new ModelFormatException(sourceName, key, "the key appears twice");
        }

        var headerBuffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerBuffer))
        {
            w.WriteStartObject();
            long offset = 0;
            foreach (var (key, t) in list)
            {
                var size = t.ByteCount;
                w.WriteStartObject(key);
                w.WriteString("dtype", DTypeName(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + size);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += size;
            }
            if (metadata is not null && metadata.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad with spaces to a multiple of 8 like the Python writer, so the data section starts aligned.
        var headerLength = headerBuffer.Length;
        var padded = (headerLength + 7) / 8 * 8;
        var header = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)padded);
        headerBuffer.GetBuffer().AsSpan(0, (int)headerLength).CopyTo(header.AsSpan(8));
        header.AsSpan(8 + (int)headerLength).Fill((byte)' ');
        return new Prepared(header, list);
    }

    /// <summary>The safetensors name of a dtype (<c>F32</c>, <c>I64</c>).</summary>
    public static string DTypeName(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Int64 => "I64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    private sealed record Entry(string Key, DType DType, int[] Shape, long Begin, long End);

    private static List<Entry> ParseHeader(ReadOnlySpan<byte> header, string source, out IReadOnlyDictionary<string, string> metadata)
    {
        // The JSON reader checks string contents only when they are read; check the encoding once, up front.
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new ModelFormatException(source, null, "the header is not valid UTF-8 text");
        JsonDocument doc;
        try
        {
            var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
            doc = JsonDocument.ParseValue(ref reader);
            // Only whitespace (the Python writer's padding) may follow the header object.
            if (reader.Read()) throw new JsonException($"unexpected content after the header object at byte {reader.TokenStartIndex}");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(source, null, $"the header is not valid JSON: {e.Message}", e);
        }
        JsonSource.RequireDecodable(doc, source);
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(source, null, $"the header must be a JSON object, got {root.ValueKind}");
            var entries = new List<Entry>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var meta = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
            {
                if (!seen.Add(p.Name)) throw new ModelFormatException(source, p.Name, "the key appears twice in the header");
                if (p.Name == MetadataKey)
                {
                    if (p.Value.ValueKind != JsonValueKind.Object)
                        throw new ModelFormatException(source, MetadataKey, $"metadata must be an object of strings, got {p.Value.ValueKind}");
                    foreach (var m in p.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String)
                            throw new ModelFormatException(source, $"{MetadataKey}.{m.Name}", $"metadata values must be strings, got {m.Value.ValueKind}");
                        if (!meta.TryAdd(m.Name, m.Value.GetString()!))
                            throw new ModelFormatException(source, $"{MetadataKey}.{m.Name}", "the metadata key appears twice");
                    }
                    continue;
                }
                entries.Add(ParseEntry(p.Name, p.Value, source));
            }
            metadata = new System.Collections.ObjectModel.ReadOnlyDictionary<string, string>(meta);
            return entries;
        }
    }

    private static Entry ParseEntry(string key, JsonElement e, string source)
    {
        if (e.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(source, key, $"the header entry must be an object with dtype, shape and data_offsets, got {e.ValueKind}");
        foreach (var p in e.EnumerateObject())
            if (p.Name is not ("dtype" or "shape" or "data_offsets"))
                throw new ModelFormatException(source, key, $"unknown header field '{p.Name}' (expected dtype, shape, data_offsets)");

        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new ModelFormatException(source, key, "the header entry needs a string 'dtype'");
        var dtypeName = dt.GetString()!;
        var dtype = dtypeName switch
        {
            "F32" => DType.Float32,
            "I64" => DType.Int64,
            _ => throw new ModelFormatException(source, key, $"unsupported dtype '{dtypeName}' (supported: F32, I64)"),
        };

        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(source, key, "the header entry needs a 'shape' array");
        var shape = new int[sh.GetArrayLength()];
        long count = 1;
        var i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out var n) || n < 0)
                throw new ModelFormatException(source, key, $"shape entry {i} must be a non-negative 32-bit integer, got {d.GetRawText()}");
            shape[i++] = n;
            count *= n;
            if (count > Array.MaxLength)
                throw new ModelFormatException(source, key, $"shape {Tensor.ShapeString(shape.AsSpan(0, i))}... has more elements than a tensor can hold");
        }

        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new ModelFormatException(source, key, "the header entry needs 'data_offsets' as [begin, end]");
        var begin = Offset(off[0], key, source);
        var end = Offset(off[1], key, source);
        if (end < begin)
            throw new ModelFormatException(source, key, $"data_offsets [{begin}, {end}] end before they begin");
        var expected = count * Tensor.ElementSize(dtype);
        if (end - begin != expected)
            throw new ModelFormatException(source, key,
                $"data_offsets [{begin}, {end}] span {end - begin} bytes, but {dtypeName} shape {Tensor.ShapeString(shape)} needs {expected}");
        return new Entry(key, dtype, shape, begin, end);
    }

    private static long Offset(JsonElement e, string key, string source)
    {
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var v) || v < 0)
            throw new ModelFormatException(source, key, $"data_offsets must be non-negative integers, got {e.GetRawText()}");
        return v;
    }

    private static Tensor Decode(ReadOnlySpan<byte> bytes, DType dtype, int[] shape)
    {
        if (dtype == DType.Float32)
        {
            var values = new float[bytes.Length / 4];
            if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
            else for (var i = 0; i < values.Length; i++) values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(i * 4)..]);
            return Tensor.Adopt(values, shape);
        }
        var longs = new long[bytes.Length / 8];
        if (BitConverter.IsLittleEndian) bytes.CopyTo(MemoryMarshal.AsBytes(longs.AsSpan()));
        else for (var i = 0; i < longs.Length; i++) longs[i] = BinaryPrimitives.ReadInt64LittleEndian(bytes[(i * 8)..]);
        return Tensor.Adopt(longs, shape);
    }

    private static int Encode(Tensor t, Span<byte> destination)
    {
        if (t.DType == DType.Float32)
        {
            var values = t.Float32;
            if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(values).CopyTo(destination);
            else for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(destination[(i * 4)..], values[i]);
            return values.Length * 4;
        }
        var longs = t.Int64;
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(longs).CopyTo(destination);
        else for (var i = 0; i < longs.Length; i++) BinaryPrimitives.WriteInt64LittleEndian(destination[(i * 8)..], longs[i]);
        return longs.Length * 8;
    }

    /// <summary>UTF-8 without a byte-order mark, the encoding of every JSON this project writes.</summary>
    internal static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
}
