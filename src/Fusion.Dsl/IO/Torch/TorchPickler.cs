using System.Buffers.Binary;
using System.Text;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// Writes the <c>data.pkl</c> of a <c>torch.save(state_dict)</c> checkpoint: the protocol-2 pickle torch itself writes,
/// <c>OrderedDict()</c> filled by SETITEMS with one <c>_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())</c>
/// per key, where storage <c>i</c> is the persistent id <c>('storage', torch.FloatStorage|LongStorage, 'i', 'cpu', numel)</c>
/// of zip entry <c>data/i</c>. No memo is written (pickle does not need one), and for a float state_dict no _metadata:
/// <c>load_state_dict</c> treats a missing version as the current layout for every float module this library has.
/// <para>
/// A quantized state_dict (<see cref="Values"/>) adds what PyTorch 1.13 pickles for a converted model: quantized tensors
/// as <c>_rebuild_qtensor(storage, 0, size, stride, quantizer_params, False, OrderedDict())</c> on a
/// <c>QInt8Storage</c>/<c>QUInt8Storage</c>, with <c>(torch.per_tensor_affine, scale, zero_point)</c> or
/// <c>(torch.per_channel_affine, scales, zero_points, axis)</c> (the scales a float64 and the zero points an int64
/// tensor, each in a storage of its own); tuples, None and dtypes (<c>torch.qint8</c>); and the <c>_metadata</c>
/// versions set by BUILD, which a quantized Linear needs (version 3) to read its packed params.
/// </para>
/// </summary>
internal static class TorchPickler
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private const int Batch = 1000;   // pickle's own SETITEMS batch size

    /// <summary>
    /// The pickle of an OrderedDict of <paramref name="state"/>'s values (see <see cref="TorchValueState"/>) with
    /// <paramref name="versions"/> as its <c>_metadata</c> (none when empty). Each storage the pickle names is added to
    /// <paramref name="storages"/> (storage i is entry i: a <see cref="Tensors.Tensor"/>, or the <c>byte[]</c>, <c>double[]</c>
    /// or <c>long[]</c> of a quantized tensor's integers, scales and zero points).
    /// </summary>
    /// <exception cref="ModelFormatException">A key is not valid Unicode, or a value is of another kind.</exception>
    public static byte[] Values(IReadOnlyList<KeyValuePair<string, object?>> state, IReadOnlyList<KeyValuePair<string, long>> versions, string path, List<object> storages)
    {
        var w = new MemoryStream();
        w.Write([0x80, 2]);                                     // PROTO 2
        OrderedDict(w);
        for (var start = 0; start < state.Count; start += Batch)
        {
            w.WriteByte((byte)'(');                             // MARK
            for (var i = start; i < Math.Min(state.Count, start + Batch); i++)
            {
                var (key, v) = state[i];
                Str(w, key, path);
                Value(w, v, storages, path, key);
            }
            w.WriteByte((byte)'u');                             // SETITEMS
        }
        if (versions.Count > 0)
        {
            // OrderedDict.__reduce__'s state: {'_metadata': OrderedDict(path: {'version': n}, ...)}, set by BUILD.
            w.WriteByte((byte)'}');                             // EMPTY_DICT
            Str(w, "_metadata", path);
            OrderedDict(w);
            w.WriteByte((byte)'(');
            foreach (var (module, version) in versions)
            {
                Str(w, module, path);
                w.WriteByte((byte)'}');
                Str(w, "version", path);
                Int(w, version);
                w.WriteByte((byte)'s');                         // SETITEM
            }
            w.WriteByte((byte)'u');
            w.WriteByte((byte)'s');
            w.WriteByte((byte)'b');                             // BUILD
        }
        w.WriteByte((byte)'.');                                 // STOP
        return w.ToArray();
    }

    private static void Value(MemoryStream w, object? v, List<object> storages, string path, string key)
    {
        switch (v)
        {
            case null: w.WriteByte((byte)'N'); break;
            case Tensor t:
                RebuildTensor(w, t.DType == DType.Float32 ? "FloatStorage" : "LongStorage", t, t.Count, t.Shape.ToArray(), storages);
                break;
            case TorchQTensor q:
                Global(w, "torch._utils", "_rebuild_qtensor");
                w.WriteByte((byte)'(');
                var bytes = new byte[q.Values.Length];
                for (var i = 0; i < bytes.Length; i++) bytes[i] = unchecked((byte)q.Values[i]);
                View(w, q.Signed ? "QInt8Storage" : "QUInt8Storage", bytes, bytes.Length, q.Shape, storages);
                w.WriteByte((byte)'(');                         // the quantizer parameters
                if (q.Axis is { } axis)
                {
                    Global(w, "torch", "per_channel_affine");
                    RebuildTensor(w, "DoubleStorage", q.Scales.ToArray(), q.Scales.Length, [q.Scales.Length], storages);
                    RebuildTensor(w, "LongStorage", q.ZeroPoints.ToArray(), q.ZeroPoints.Length, [q.ZeroPoints.Length], storages);
                    Int(w, axis);
                }
                else
                {
                    Global(w, "torch", "per_tensor_affine");
                    Float(w, q.Scales[0]);
                    Int(w, q.ZeroPoints[0]);
                }
                w.WriteByte((byte)'t');
                w.WriteByte(0x89);                              // NEWFALSE: requires_grad
                OrderedDict(w);                                 // backward_hooks
                w.WriteByte((byte)'t');
                w.WriteByte((byte)'R');                         // REDUCE
                break;
            case object?[] tuple:
                w.WriteByte((byte)'(');
                foreach (var item in tuple) Value(w, item, storages, path, key);
                w.WriteByte((byte)'t');
                break;
            case TorchDType d: Global(w, "torch", d.Name); break;
            default: throw new ModelFormatException(path, key, $"cannot pickle a {v.GetType().Name}");
        }
    }

    /// <summary><c>_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())</c> of a new storage.</summary>
    private static void RebuildTensor(MemoryStream w, string storageType, object payload, long numel, int[] shape, List<object> storages)
    {
        Global(w, "torch._utils", "_rebuild_tensor_v2");
        w.WriteByte((byte)'(');
        View(w, storageType, payload, numel, shape, storages);
        w.WriteByte(0x89);                                      // NEWFALSE: requires_grad
        OrderedDict(w);                                         // backward_hooks
        w.WriteByte((byte)'t');
        w.WriteByte((byte)'R');                                 // REDUCE
    }

    /// <summary>A view's first four arguments: the persistent id of a new storage, offset 0, size and contiguous stride.</summary>
    private static void View(MemoryStream w, string storageType, object payload, long numel, int[] shape, List<object> storages)
    {
        w.WriteByte((byte)'(');
        Str(w, "storage", "");
        Global(w, "torch", storageType);
        Str(w, storages.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), "");
        Str(w, "cpu", "");
        Int(w, numel);
        w.WriteByte((byte)'t');                                 // TUPLE: the persistent id
        w.WriteByte((byte)'Q');                                 // BINPERSID
        storages.Add(payload);
        Int(w, 0);                                              // storage offset
        var stride = new long[shape.Length];
        long s = 1;
        for (var d = shape.Length - 1; d >= 0; d--) { stride[d] = s; s *= Math.Max(shape[d], 1); }   // torch's contiguous strides
        Tuple(w, shape.Select(x => (long)x).ToArray());
        Tuple(w, stride);
    }

    private static void Float(MemoryStream w, double v)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteDoubleBigEndian(b, v);
        w.WriteByte((byte)'G');                                 // BINFLOAT
        w.Write(b);
    }

    private static void OrderedDict(MemoryStream w)
    {
        Global(w, "collections", "OrderedDict");
        w.WriteByte((byte)')');                                 // EMPTY_TUPLE
        w.WriteByte((byte)'R');
    }

    private static void Global(MemoryStream w, string module, string name)
    {
        w.WriteByte((byte)'c');
        w.Write(Encoding.ASCII.GetBytes(module + "\n" + name + "\n"));
    }

    private static void Tuple(MemoryStream w, long[] items)
    {
        if (items.Length is 0) { w.WriteByte((byte)')'); return; }
        if (items.Length > 3) w.WriteByte((byte)'(');
        foreach (var v in items) Int(w, v);
        w.WriteByte(items.Length switch { 1 => 0x85, 2 => 0x86, 3 => 0x87, _ => (byte)'t' });
    }

    private static void Int(MemoryStream w, long v)
    {
        Span<byte> b = stackalloc byte[9];
        if (v is >= 0 and <= 0xff) { w.WriteByte((byte)'K'); w.WriteByte((byte)v); }
        else if (v is >= 0 and <= 0xffff) { w.WriteByte((byte)'M'); BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)v); w.Write(b[..2]); }
        else if (v is >= int.MinValue and <= int.MaxValue) { w.WriteByte((byte)'J'); BinaryPrimitives.WriteInt32LittleEndian(b, (int)v); w.Write(b[..4]); }
        else { w.WriteByte(0x8a); w.WriteByte(8); BinaryPrimitives.WriteInt64LittleEndian(b, v); w.Write(b[..8]); }   // LONG1
    }

    private static void Str(MemoryStream w, string s, string path)
    {
        byte[] bytes;
        try { bytes = StrictUtf8.GetBytes(s); }
        catch (EncoderFallbackException) { throw new ModelFormatException(path, s, "the key is not valid Unicode (it holds a lone surrogate)"); }
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)bytes.Length);
        w.WriteByte((byte)'X');                                 // BINUNICODE
        w.Write(len);
        w.Write(bytes);
    }
}
