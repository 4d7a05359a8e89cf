using System.Buffers.Binary;

namespace Fusion.Dsl.IO;

/// <summary>
/// A torch storage type a state_dict may hold (<c>torch.FloatStorage</c>, ...): its element size and how one element
/// becomes a value of this library's dtypes. Floating types become float32 (float16 and bfloat16 exactly, float64
/// rounded to nearest, as <c>load_state_dict</c>'s copy into a float32 parameter does); integer and bool types become
/// int64 exactly. The 8-bit quantized storages (<c>QInt8Storage</c>, <c>QUInt8Storage</c>) hold the integers of a
/// quantized tensor; only the quantized state_dict reader admits them (<see cref="Quantized"/>).
/// </summary>
internal readonly record struct StorageKind(string Name, int Size, bool Float, bool Quantized = false)
{
    private static readonly Dictionary<string, StorageKind> ByName = new StorageKind[]
    {
        new("FloatStorage", 4, true), new("HalfStorage", 2, true), new("BFloat16Storage", 2, true), new("DoubleStorage", 8, true),
        new("LongStorage", 8, false), new("IntStorage", 4, false), new("ShortStorage", 2, false),
        new("CharStorage", 1, false), new("ByteStorage", 1, false), new("BoolStorage", 1, false),
        new("QInt8Storage", 1, false, true), new("QUInt8Storage", 1, false, true),
    }.ToDictionary(k => k.Name, StringComparer.Ordinal);

    /// <summary>The names of the storage types of a float state_dict (in module <c>torch</c>).</summary>
    public static IEnumerable<string> Names => ByName.Values.Where(k => !k.Quantized).Select(k => k.Name);

    /// <summary>The names of the storage types of quantized tensors (in module <c>torch</c>).</summary>
    public static IEnumerable<string> QuantizedNames => ByName.Values.Where(k => k.Quantized).Select(k => k.Name);

    /// <summary>Whether <paramref name="name"/> is a supported storage type.</summary>
    public static bool IsKnown(string name) => ByName.ContainsKey(name);

    /// <summary>The kind called <paramref name="name"/> (which the unpickler has already checked).</summary>
    public static StorageKind Of(string name) => ByName[name];

    /// <summary>Element <paramref name="index"/> of a storage of this (floating) kind, as float32.</summary>
    public float ReadFloat(byte[] storage, long index)
    {
        var at = storage.AsSpan((int)(index * Size), Size);
        return Name switch
        {
            "FloatStorage" => BinaryPrimitives.ReadSingleLittleEndian(at),
            "HalfStorage" => (float)BinaryPrimitives.ReadHalfLittleEndian(at),
            // bfloat16 is the upper half of a float32.
            "BFloat16Storage" => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(at) << 16),
            _ => (float)BinaryPrimitives.ReadDoubleLittleEndian(at),
        };
    }

    /// <summary>Element <paramref name="index"/> of a storage of this (integer or bool) kind, as int64.</summary>
    public long ReadLong(byte[] storage, long index)
    {
        var at = storage.AsSpan((int)(index * Size), Size);
        return Name switch
        {
            "LongStorage" => BinaryPrimitives.ReadInt64LittleEndian(at),
            "IntStorage" => BinaryPrimitives.ReadInt32LittleEndian(at),
            "ShortStorage" => BinaryPrimitives.ReadInt16LittleEndian(at),
            "CharStorage" or "QInt8Storage" => (sbyte)at[0],
            "ByteStorage" or "QUInt8Storage" => at[0],
            _ => at[0] != 0 ? 1 : 0,
        };
    }
}
