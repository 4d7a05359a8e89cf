using System.Buffers.Binary;
using System.Text;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// Writes the <c>data.pkl</c> of a <c>torch.save(state_dict)</c> checkpoint: the protocol-2 pickle torch itself writes,
/// <c>OrderedDict()</c> filled by SETITEMS with one <c>_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())</c>
/// per key, where storage <c>i</c> is the persistent id <c>('storage', torch.FloatStorage|LongStorage, 'i', 'cpu', numel)</c>
/// of zip entry <c>data/i</c>. No memo is written (pickle does not need one), and no _metadata: <c>load_state_dict</c>
/// treats a missing version as the current layout for every module this library has.
/// </summary>
internal static class TorchPickler
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private const int Batch = 1000;   // pickle's own SETITEMS batch size

    /// <summary>The pickle of an OrderedDict of <paramref name="state"/>'s tensors; storage i is the i-th tensor.</summary>
    /// <exception cref="ModelFormatException">A key is not valid Unicode (a lone surrogate).</exception>
    public static byte[] StateDict(IReadOnlyList<KeyValuePair<string, Tensor>> state, string path)
    {
        var w = new MemoryStream();
        w.Write([0x80, 2]);                                     // PROTO 2
        OrderedDict(w);
        for (var start = 0; start < state.Count; start += Batch)
        {
            w.WriteByte((byte)'(');                             // MARK
            for (var i = start; i < Math.Min(state.Count, start + Batch); i++)
            {
                var (key, t) = state[i];
                Str(w, key, path);
                Tensor(w, t, i);
            }
            w.WriteByte((byte)'u');                             // SETITEMS
        }
        w.WriteByte((byte)'.');                                 // STOP
        return w.ToArray();
    }

    private static void Tensor(MemoryStream w, Tensor t, int storage)
    {
        Global(w, "torch._utils", "_rebuild_tensor_v2");
        w.WriteByte((byte)'(');
        w.WriteByte((byte)'(');
        Str(w, "storage", "");
        Global(w, "torch", t.DType == DType.Float32 ? "FloatStorage" : "LongStorage");
        Str(w, storage.ToString(System.Globalization.CultureInfo.InvariantCulture), "");
        Str(w, "cpu", "");
        Int(w, t.Count);
        w.WriteByte((byte)'t');                                 // TUPLE: the persistent id
        w.WriteByte((byte)'Q');                                 // BINPERSID
        Int(w, 0);                                              // storage offset
        var shape = t.Shape.ToArray();
        var stride = new long[shape.Length];
        long s = 1;
        for (var d = shape.Length - 1; d >= 0; d--) { stride[d] = s; s *= Math.Max(shape[d], 1); }   // torch's contiguous strides
        Tuple(w, shape.Select(x => (long)x).ToArray());
        Tuple(w, stride);
        w.WriteByte(0x89);                                      // NEWFALSE: requires_grad
        OrderedDict(w);                                         // backward_hooks
        w.WriteByte((byte)'t');
        w.WriteByte((byte)'R');                                 // REDUCE
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
