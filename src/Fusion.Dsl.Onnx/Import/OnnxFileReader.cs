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

    private readonly List<string> _externalFiles = [];

    /// <summary>The external data files read so far (resolved paths, each once).</summary>
    public IReadOnlyList<string> ExternalFiles => _externalFiles;

    /// <summary>The error for tensor or node <paramref name="key"/> of this file.</summary>
    public ModelFormatException Error(string? key, string problem, Exception? inner = null) => new(FileName, key, problem, inner);

    /// <summary>Reads and parses <paramref name="path"/>.</summary>
    /// <exception cref="ModelFormatException">The file is missing, empty, not a regular file, over 2 GiB, or not a parseable ONNX model.</exception>
    public static (OnnxFileReader Reader, ModelProto Model) Open(string path)
    {
        // Protobuf messages are limited to 2 GiB (larger models keep their weights as external data); BoundedFile also
        // refuses an empty path, a directory, a device or a pipe unread.
        return Parse(BoundedFile.ReadAllBytes(path, BoundedFile.MaxTensorFileBytes, "one ONNX protobuf message"), path);
    }

    /// <summary>Parses the bytes of the file at <paramref name="path"/>, already read (by <see cref="ModelInput"/>).</summary>
    /// <exception cref="ModelFormatException">The bytes are not a parseable ONNX model.</exception>
    public static (OnnxFileReader Reader, ModelProto Model) Parse(byte[] bytes, string path)
    {
        var reader = new OnnxFileReader(System.IO.Path.GetFullPath(path));
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

    /// <summary>Whether <see cref="Decode"/> reads <paramref name="t"/>'s element type (float32 and int64).</summary>
    public static bool IsDecodable(TensorProto t)
        => (TensorProto.Types.DataType)t.DataType is TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int64;

    /// <summary>Decodes a float32 or int64 tensor (raw, typed or external data).</summary>
    /// <exception cref="ModelFormatException">Another element type, negative dimensions, more elements than
    /// <see cref="Limits.MaxElements"/>, a size that does not match the data present, or external data that is missing,
    /// outside the model's folder, or more than the process's memory can hold.</exception>
    public Tensor Decode(TensorProto t, string name)
    {
        var dims = new int[t.Dims.Count];
        for (var i = 0; i < dims.Length; i++)
        {
            if (t.Dims[i] < 0 || t.Dims[i] > int.MaxValue) throw Error(name, $"dimension {t.Dims[i]} is not a size");
            dims[i] = (int)t.Dims[i];
        }
        // Checked before any data is looked at: a declared size is never allocated past the limit.
        if (Limits.ElementCount(dims) is not { } count)
            throw Error(name, $"shape [{string.Join(", ", t.Dims)}] has more than the limit of {Limits.MaxElements:N0} elements per tensor");
        var type = (TensorProto.Types.DataType)t.DataType;
        if (type is not (TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int64))
            throw Error(name, $"element type {type} is not supported (float32 and int64 are)");
        var isFloat = type == TensorProto.Types.DataType.Float;
        var size = isFloat ? 4L : 8L;
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw_data is little-endian");
        if (t.DataLocation == TensorProto.Types.DataLocation.External) return External(t, name, dims, isFloat, count * size);
        if (t.RawData.IsEmpty)
        {
            var typed = isFloat ? t.FloatData.Count : t.Int64Data.Count;
            if (typed != count) throw Error(name, $"shape [{string.Join(", ", dims)}] needs {count} values, {(isFloat ? "float_data" : "int64_data")} has {typed}");
            return isFloat ? Tensor.FromFloat32(t.FloatData.ToArray(), dims) : Tensor.FromInt64(t.Int64Data.ToArray(), dims);
        }
        var raw = t.RawData.Span;
        if (raw.Length != count * size)
            throw Error(name, $"shape [{string.Join(", ", dims)}] needs {count * size} bytes of data, the file has {raw.Length}");
        return isFloat
            ? Tensor.FromFloat32(MemoryMarshal.Cast<byte, float>(raw), dims)
            : Tensor.FromInt64(MemoryMarshal.Cast<byte, long>(raw), dims);
    }

    /// <summary>
    /// Reads external data: <c>location</c> is a path relative to the model's folder, resolved with every symbolic link
    /// followed, and the file it really names must be a regular file inside the model's real folder (so neither
    /// <c>etc/passwd</c> through a link <c>etc -&gt; /etc</c> nor a link to a file elsewhere is read). Its length is the
    /// resolved file's, and exactly the bytes the shape needs are read, straight into the tensor.
    /// </summary>
    private Tensor External(TensorProto t, string name, int[] dims, bool isFloat, long expected)
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
        if (location.Contains('\0')) throw Error(name, "external data location holds a NUL character, which no file name has");
        // The location is relative to the model's folder and may not leave it (ONNX's own checker refuses that too).
        if (System.IO.Path.IsPathRooted(location))
            throw Error(name, $"external data location '{location}' is an absolute path; it must be relative to the model's folder");
        string folder, file;
        try
        {
            folder = RealPath.Of(System.IO.Path.GetDirectoryName(Path)!);
            file = RealPath.Of(System.IO.Path.Join(folder, location));
        }
        catch (IOException e) { throw Error(name, $"external data location '{location}' cannot be resolved: {e.Message}", e); }
        if (!RealPath.IsInside(file, folder))
            throw Error(name, $"external data location '{location}' leads to {file}, outside the model's folder {folder}");
        switch (RealPath.Kind(file))
        {
            case FileKind.Missing: throw Error(name, $"external data file '{location}' does not exist beside the model");
            case FileKind.Regular: break;
            default: throw Error(name, $"external data location '{location}' is not a regular file (a directory, a device or a pipe)");
        }
        if (!_externalFiles.Contains(file)) _externalFiles.Add(file);
        var fileLength = new FileInfo(file).Length;
        if (offset > fileLength) throw Error(name, $"external data offset {offset} lies past the end of '{location}' ({fileLength} bytes)");
        if (length < 0) length = fileLength - offset;
        if (length != expected) throw Error(name, $"external data holds {length} bytes, the shape needs {expected}");
        if (length > fileLength - offset)
            throw Error(name, $"external data at offset {offset}, length {length} lies past the end of '{location}' ({fileLength} bytes)");
        // int64 data is read into an array and copied into the tensor; float32 data goes straight into the tensor.
        BoundedFile.RequireMemory(FileName, name, isFloat ? expected : 2 * expected);
        try
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            stream.Seek(offset, SeekOrigin.Begin);
            if (isFloat) return Tensor.Create(elements => stream.ReadExactly(MemoryMarshal.AsBytes(elements)), dims);
            var values = new long[expected / 8];
            stream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
            return Tensor.FromInt64(values, dims);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Error(name, $"cannot read external data file '{location}': {e.Message}", e);
        }
    }
}
