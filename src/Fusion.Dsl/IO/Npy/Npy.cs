using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// NumPy's <c>.npy</c> files of float32 arrays (what <c>numpy.save</c> and <c>torch.Tensor.numpy()</c> give a user):
/// the inputs and outputs of <c>fusion run</c>. Versions 1 to 3, C order, little-endian <c>&lt;f4</c> (or <c>&lt;f8</c>,
/// read as float32). Written here rather than taken from a library: the header is a Python dict literal of three keys,
/// and the reader must refuse hostile files (a header or shape that lies about the data) before allocating.
/// </summary>
public static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    // {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), } in any key order, as numpy writes it.
    private static readonly Regex Header = new(
        @"^\{\s*(?:(?:'descr'\s*:\s*'(?<descr>[^']*)'|'fortran_order'\s*:\s*(?<fortran>True|False)|'shape'\s*:\s*\((?<shape>[0-9,\s]*)\))\s*,?\s*){3}\}\s*$",
        RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    /// <summary>Reads a float32 (or float64) array as a float32 tensor of its shape.</summary>
    /// <exception cref="ModelFormatException">Not an .npy file, another dtype, Fortran order, a shape over the tensor limit,
    /// or a data length that does not match the shape.</exception>
    public static Tensor Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var bytes = BoundedFile.ReadAllBytes(path, BoundedFile.MaxTensorFileBytes, "an .npy file");
        ModelFormatException Bad(string problem) => new(path, null, problem);
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic)) throw Bad("is not an .npy file (it does not start with \\x93NUMPY)");
        var major = bytes[6];
        if (major is < 1 or > 3) throw Bad($"has .npy format version {major}, which this reader does not know (1 to 3)");
        int headerLength, start;
        if (major == 1) (headerLength, start) = (BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8)), 10);
        else
        {
            if (bytes.Length < 12) throw Bad("is truncated inside its header");
            var h = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
            if (h > 1 << 20) throw Bad($"declares a header of {h:N0} bytes");
            (headerLength, start) = ((int)h, 12);
        }
        if (start + headerLength > bytes.Length) throw Bad("is truncated inside its header");
        var text = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(bytes, start, headerLength).TrimEnd('\n', ' ', '\0');
        var m = Header.Match(text);
        if (!m.Success || !m.Groups["descr"].Success || !m.Groups["fortran"].Success || !m.Groups["shape"].Success)
            throw Bad($"has a header this reader does not understand: {Shorten(text)}");
        var descr = m.Groups["descr"].Value;
        if (descr is not ("<f4" or "<f8"))
            throw Bad($"holds dtype '{descr}'; give a float32 array (numpy: x.astype(np.float32))");
        if (m.Groups["fortran"].Value == "True") throw Bad("is in Fortran order; save a C-ordered array (numpy: np.ascontiguousarray(x))");
        var dims = m.Groups["shape"].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var shape = new int[dims.Length];
        long count = 1;
        for (var i = 0; i < dims.Length; i++)
        {
            if (!long.TryParse(dims[i], NumberStyles.None, CultureInfo.InvariantCulture, out var d) || d > Limits.MaxElements)
                throw Bad($"has a dimension '{dims[i]}' over the limit of {Limits.MaxElements} elements per tensor");
            shape[i] = (int)d;
            count *= d;
            if (count > Limits.MaxElements) throw Bad($"has shape ({m.Groups["shape"].Value}), over the limit of {Limits.MaxElements} elements per tensor");
        }
        var size = descr == "<f4" ? 4 : 8;
        var data = start + headerLength;
        if (bytes.Length - data != count * size)
            throw Bad($"holds {bytes.Length - data:N0} bytes of data, but shape ({m.Groups["shape"].Value}) of {descr} needs {count * size:N0}");
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
            values[i] = size == 4
                ? BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(data + i * 4))
                : (float)BinaryPrimitives.ReadDoubleLittleEndian(bytes.AsSpan(data + i * 8));
        return Tensor.FromFloat32(values, shape);
    }

    /// <summary>Writes a float32 tensor as an .npy file (version 1, C order), atomically.</summary>
    /// <exception cref="ArgumentException">The tensor is not float32.</exception>
    /// <exception cref="ModelFormatException">The file cannot be written.</exception>
    public static void Write(string path, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType != DType.Float32) throw new ArgumentException($"an .npy output is float32, got {tensor.DType}", nameof(tensor));
        var shape = tensor.Rank == 1 ? $"({tensor.Size(0)},)" : "(" + string.Join(", ", tensor.Dimensions) + ")";
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}";
        // numpy pads the header with spaces so that the data starts on a multiple of 64 bytes, ending in a newline.
        var total = 10 + header.Length + 1;
        header += new string(' ', (64 - total % 64) % 64) + "\n";
        var values = tensor.ToArray();
        OutputFile.Write(path, s =>
        {
            s.Write(Magic);
            s.Write([1, 0]);
            Span<byte> len = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)header.Length);
            s.Write(len);
            s.Write(Encoding.Latin1.GetBytes(header));
            var buffer = new byte[values.Length * 4];
            for (var i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * 4), values[i]);
            s.Write(buffer);
        });
    }

    private static string Shorten(string s) => s.Length <= 120 ? s : s[..120] + "...";
}
