using System.Runtime.InteropServices;
using Fusion.Dsl.IO;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;
using Google.Protobuf;

namespace Fusion.Dsl.Onnx.Import;

/// <summary>
/// Reads an <c>.onnx</c> file into the generated <see cref="ModelProto"/> and decodes its tensors, with every size bounded
/// by the real length of the file it comes from: the whole file is read first (so no length field can make the parser
/// allocate past it), element counts are checked against the bytes present in 64-bit arithmetic, and external data must
/// lie inside a file beside the model.
/// </summary>
internal sealed class OnnxFileReader
{
    private OnnxFileReader(string path) { Path = path; FileName = System.IO.Path.GetFileName(path); }

    /// <summary>The model file's full path.</summary>
    public string Path { get; }

    /// <summary>The model file's name, for error messages.</summary>
    public string FileName { get; }

    /// <summary>The error for tensor or node <paramref name="key"/> of this file.</summary>
    public ModelFormatException Error(string? key, string problem, Exception? inner = null) => new(FileName, key, problem, inner);

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is missing, over 2 GiB, or not a parseable ONNX model.</exception>
    public static (OnnxFileReader Reader, ModelProto Model) Open(string path)
    {
        var reader = new OnnxFileReader(System.IO.Path.GetFullPath(path));
        var info = new FileInfo(reader.Path);
        if (!info.Exists) throw reader.Error(null, "the file does not exist");
        // Protobuf messages are limited to 2 GiB; larger models keep their weights as external data.
        if (info.Length > int.MaxValue) throw reader.Error(null, $"the file has {info.Length} bytes, over protobuf's 2 GiB limit for one message");
        if (info.Length == 0) throw reader.Error(null, "the file is empty");
        var bytes = File.ReadAllBytes(reader.Path);
        try
        {
            var model = ModelProto.Parser.ParseFrom(bytes);
            if (model.Graph is null) throw reader.Error(null, "the model has no graph (truncated or not an ONNX file)");
            return (reader, model);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw reader.Error(null, $"not a valid ONNX protobuf (truncated or corrupt): {e.Message}", e);
        }
    }

    /// <summary>Decodes a float32 or int64 tensor (raw, typed or external data).</summary>
    /// <exception cref="ModelFormatException">Another element type, negative dimensions, a size that does not match the
    /// data present, or external data that is missing or outside its file.</exception>
    public Tensor Decode(TensorProto t, string name)
    {
        var dims = new int[t.Dims.Count];
        long count = 1;
        for (var i = 0; i < dims.Length; i++)
        {
            if (t.Dims[i] < 0 || t.Dims[i] > int.MaxValue) throw Error(name, $"dimension {t.Dims[i]} is not a size");
            dims[i] = (int)t.Dims[i];
            count = count * dims[i];
            if (count > int.MaxValue) throw Error(name, $"shape [{string.Join(", ", t.Dims)}] has more than {int.MaxValue} elements");
        }
        var type = (TensorProto.Types.DataType)t.DataType;
        if (type is not (TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int64))
            throw Error(name, $"element type {type} is not supported (float32 and int64 are)");
        var size = type == TensorProto.Types.DataType.Float ? 4L : 8L;
        ReadOnlySpan<byte> raw;
        if (t.DataLocation == TensorProto.Types.DataLocation.External) raw = External(t, name, count * size);
        else if (!t.RawData.IsEmpty) raw = t.RawData.Span;
        else if (type == TensorProto.Types.DataType.Float)
        {
            if (t.FloatData.Count != count) throw Error(name, $"shape [{string.Join(", ", dims)}] needs {count} values, float_data has {t.FloatData.Count}");
            return Tensor.FromFloat32(t.FloatData.ToArray(), dims);
        }
        else
        {
            if (t.Int64Data.Count != count) throw Error(name, $"shape [{string.Join(", ", dims)}] needs {count} values, int64_data has {t.Int64Data.Count}");
            return Tensor.FromInt64(t.Int64Data.ToArray(), dims);
        }
        if (raw.Length != count * size)
            throw Error(name, $"shape [{string.Join(", ", dims)}] needs {count * size} bytes of data, the file has {raw.Length}");
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data is little-endian");
        return type == TensorProto.Types.DataType.Float
            ? Tensor.FromFloat32(MemoryMarshal.Cast<byte, float>(raw), dims)
            : Tensor.FromInt64(MemoryMarshal.Cast<byte, long>(raw), dims);
    }

    private byte[] External(TensorProto t, string name, long expected)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (var e in t.ExternalData)
        {
            switch (e.Key)
            {
                case "location": location = e.Value; break;
                case "offset" when !long.TryParse(e.Value, out offset) || offset < 0:
                    throw Error(name, $"external data offset '{e.Value}' is not a non-negative number");
                case "length" when !long.TryParse(e.Value, out length) || length < 0:
                    throw Error(name, $"external data length '{e.Value}' is not a non-negative number");
            }
        }
        if (string.IsNullOrEmpty(location)) throw Error(name, "external data without a location");
        var dir = System.IO.Path.GetDirectoryName(Path)!;
        var file = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir, location));
        // The location is relative to the model's folder and may not leave it (ONNX's own checker refuses that too).
        if (System.IO.Path.IsPathRooted(location) || !file.StartsWith(dir + System.IO.Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw Error(name, $"external data location '{location}' is outside the model's folder");
        var info = new FileInfo(file);
        if (!info.Exists) throw Error(name, $"external data file '{location}' does not exist beside the model");
        if (length < 0) length = info.Length - offset;
        if (length != expected) throw Error(name, $"external data holds {length} bytes, the shape needs {expected}");
        if (offset > info.Length || length > info.Length - offset)
            throw Error(name, $"external data at offset {offset}, length {length} lies past the end of '{location}' ({info.Length} bytes)");
        var data = new byte[length];
        using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read);
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(data);
        return data;
    }
}
