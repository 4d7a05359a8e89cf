using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// Reads and writes PyTorch's <c>torch.save</c> checkpoints (the zip format of torch 1.6 and later) holding a
/// <c>state_dict</c>: a zip whose top folder (any name) holds <c>data.pkl</c>, a pickle of an <c>OrderedDict</c> of
/// tensors, and <c>data/N</c>, the raw little-endian bytes of each storage the tensors view.
/// <para>
/// Reading never runs anything from the file: the pickle goes through <see cref="TorchUnpickler"/>, a restricted unpickler
/// that allows the four globals a state_dict needs and refuses every other by name (why not a general unpickler:
/// docs/decisions/torch-checkpoint-unpickler.md).
/// </para>
/// <para>
/// Tensors: <c>_rebuild_tensor_v2</c> views (storage offset, sizes, strides; a non-contiguous view is copied out) and
/// <c>_rebuild_parameter</c>. Storages of float32, float16, bfloat16 and float64 become <see cref="DType.Float32"/>
/// (float64 is rounded to float32, as PyTorch's own <c>load_state_dict</c> does when it copies into a float32
/// parameter); int64, int32, int16, int8, uint8 and bool become <see cref="DType.Int64"/> (exact). A checkpoint that
/// wraps its state_dict in a dict (<c>{"epoch": 3, "state_dict": ...}</c>) is read from its <c>state_dict</c>,
/// <c>model_state_dict</c> or <c>model</c> entry, the first of those that holds a dict of tensors.
/// </para>
/// Every size is checked with 64-bit arithmetic against the bytes really there: a storage shorter than a view of it, a
/// declared size beyond the file, a compressed or truncated entry are each a <see cref="ModelFormatException"/> naming
/// the file, the key and the problem. Files from torch before 1.6 (pickle or tar, not zip) are refused with a hint to re-save.
/// </summary>
public static class TorchCheckpoint
{
    /// <summary>The top folder of the zip files <see cref="Write"/> produces (torch reads any name).</summary>
    public const string ArchiveName = "archive";

    /// <summary>The dict entries a wrapped checkpoint may keep its state_dict under, in the order they are tried.</summary>
    public static readonly IReadOnlyList<string> WrapperKeys = ["state_dict", "model_state_dict", "model"];

    /// <summary>
    /// How many times the elements its storages hold a checkpoint's tensors may hold in all (tied weights view a storage
    /// twice; a state_dict that expands a storage more is refused, so that a small file cannot claim a huge state).
    /// </summary>
    public const long MaxExpansion = 4;

    /// <summary>Elements the tensors may hold beyond <see cref="MaxExpansion"/> times the storages (small expanded tensors).</summary>
    public const long MaxExpansionSlack = 1 << 20;

    // torch.serialization.MAGIC_NUMBER (0x1950a86a20f9469cfc6c) as pickled by the legacy format: LONG1, 10 bytes.
    private static readonly byte[] LegacyMagic = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    private const string ReSave = "re-save it with a current torch: torch.save(torch.load(f), g, _use_new_zipfile_serialization=True)";

    /// <summary>Reads the state_dict of a <c>torch.save</c> zip file; the tensors come in the pickle's key order.</summary>
    /// <exception cref="ModelFormatException">The file cannot be read, is not a torch.save zip, asks for a global outside the allowlist, or a tensor does not fit its storage.</exception>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Read(string path)
    {
        using var file = InputFile.Open(path);
        return Read(file, path);
    }

    /// <summary>True when the first bytes are those of a zip file or of a legacy (pre-1.6) torch.save file.</summary>
    internal static bool Claims(ReadOnlySpan<byte> head) => IsZip(head) || IsLegacy(head);

    internal static IReadOnlyList<KeyValuePair<string, Tensor>> Read(InputFile file, string path)
        => Open(file, path, quantized: false).Items.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, (Tensor)kv.Value!)).ToArray();

    /// <summary>
    /// Reads a quantized model's state_dict (PyTorch 1.13's <c>torch.save(qmodel.state_dict())</c>) through the restricted
    /// unpickler with <see cref="TorchUnpickler.QuantizedGlobals"/>: tensors, quantized tensors, the packed params'
    /// tuples, <c>torch.qint8</c> and None, with every storage checked as for <see cref="Read(string)"/>, and the
    /// <c>_metadata</c> versions.
    /// </summary>
    /// <exception cref="ModelFormatException">As <see cref="Read(string)"/>, or a value of another kind (naming the key).</exception>
    internal static TorchValueState ReadQuantized(string path)
    {
        using var file = InputFile.Open(path);
        return Open(file, path, quantized: true);
    }

    private static TorchValueState Open(InputFile file, string path, bool quantized)
    {
        var head = file.Peek(512);
        if (IsLegacy(head))
            throw new ModelFormatException(path, null, $"is a legacy torch.save file (the format of torch before 1.6, not a zip); {ReSave}");
        if (!IsZip(head))
            throw new ModelFormatException(path, null, "is not a torch.save zip file (it does not start with a zip header)");
        ZipArchive zip;
        try { zip = new ZipArchive(file.Stream, ZipArchiveMode.Read, leaveOpen: true); }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, null, $"is not a readable zip file (truncated or corrupt?): {e.Message}", e);
        }
        using (zip) return ReadArchive(zip, path, file.Length, quantized);
    }

    private static TorchValueState ReadArchive(ZipArchive zip, string path, long fileLength, bool quantized)
    {
        var entries = new Dictionary<string, ZipArchiveEntry>(StringComparer.Ordinal);
        try
        {
            foreach (var e in zip.Entries)
                if (!entries.TryAdd(e.FullName, e))
                    throw new ModelFormatException(path, e.FullName, "the zip holds two entries of this name");
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or NotSupportedException)
        {
            throw new ModelFormatException(path, null, $"the zip's central directory is corrupt: {e.Message}", e);
        }

        // torch takes the top folder's name from the entries; data.pkl sits right under it.
        var pickles = entries.Keys.Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/') == n.Length - "/data.pkl".Length).ToList();
        if (pickles.Count != 1)
            throw new ModelFormatException(path, null, pickles.Count == 0
                ? "the zip has no FOLDER/data.pkl entry (not a torch.save checkpoint)"
                : $"the zip has {pickles.Count} data.pkl entries ({string.Join(", ", pickles)}); a torch.save checkpoint has one");
        var pickleName = pickles[0];
        var prefix = pickleName[..^"data.pkl".Length];

        var pickle = ReadEntry(entries[pickleName], path, pickleName, fileLength);
        var root = quantized ? TorchUnpickler.LoadQuantized(pickle, path, pickleName) : TorchUnpickler.Load(pickle, path, pickleName);
        string? wrapper = null;
        var state = quantized
            ? root as PickleDict ?? throw new ModelFormatException(path, null, $"the checkpoint holds a {TorchUnpickler.Describe(root)}, not a state_dict (a dict)")
            : FindStateDict(root, path, out wrapper);
        var where = wrapper is null ? "" : $" (in the checkpoint's '{wrapper}' entry)";

        // Check every tensor against its storage before reading any storage.
        var views = new List<(string Key, TensorRef View, StorageKind Kind)>(state.Items.Count);
        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        var keys = new List<string>(state.Items.Count);
        foreach (var (k, v) in state.Items)
        {
            if (k is not string key)
                throw new ModelFormatException(path, null, $"a state_dict key is a {TorchUnpickler.Describe(k)}, not a string{where}");
            keys.Add(key);
            foreach (var view in Views(v, quantized, path, key, where))
                Check(view, key);
        }

        void Check(TensorRef view, string key)
        {
            var storage = view.Storage;
            if (storages.TryGetValue(storage.Key, out var seen) && seen != storage)
                throw new ModelFormatException(path, key, $"storage '{storage.Key}' is declared as {seen.Type} of {seen.Numel} elements elsewhere and as {storage.Type} of {storage.Numel} here");
            var kind = StorageKind.Of(storage.Type.Name);
            if (seen is null)
            {
                var entryName = prefix + "data/" + storage.Key;
                if (!entries.TryGetValue(entryName, out var entry))
                    throw new ModelFormatException(path, key, $"its storage '{storage.Key}' has no entry {entryName} in the zip{where}");
                var need = CheckedBytes(storage.Numel, kind.Size, path, key);
                if (entry.Length != need)
                    throw new ModelFormatException(path, key,
                        $"storage '{storage.Key}' declares {storage.Numel} {storage.Type.Name} elements ({need} bytes), but {entryName} holds {entry.Length} bytes{where}");
                storages.Add(storage.Key, storage);
            }
            CheckView(view, path, key);
            views.Add((key, view, kind));
        }

        // Views may alias (tied weights) or repeat elements (zero strides), so a small file could describe a huge state;
        // bound what is built by what is stored.
        long stored = storages.Values.Sum(s => s.Numel), built = 0, limit = MaxExpansion * stored + MaxExpansionSlack;
        foreach (var (key, view, _) in views)
        {
            built += view.Size.Aggregate(1L, (a, d) => a * d);   // each product was checked against Array.MaxLength
            if (built > limit)
                throw new ModelFormatException(path, key,
                    $"the tensors up to this one hold {built} elements, more than {MaxExpansion} times the {stored} elements stored " +
                    "(views repeating a storage through zero strides or many aliases); refused to bound memory");
        }

        // Read each storage once, and let it go after the last tensor that views it.
        var uses = views.GroupBy(v => v.View.Storage.Key).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        var cache = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        byte[] Bytes(TensorRef view)
        {
            var storageKey = view.Storage.Key;
            if (!cache.TryGetValue(storageKey, out var bytes))
            {
                var entryName = prefix + "data/" + storageKey;
                bytes = ReadEntry(entries[entryName], path, entryName, fileLength);
                cache[storageKey] = bytes;
            }
            if (--uses[storageKey] == 0) cache.Remove(storageKey);
            return bytes;
        }
        var result = new KeyValuePair<string, object?>[keys.Count];
        for (var i = 0; i < keys.Count; i++)
            result[i] = new(keys[i], Value(state.Items[i].Value, Bytes, path, keys[i]));
        return new TorchValueState(Array.AsReadOnly(result), quantized ? Versions(state, path) : []);
    }

    /// <summary>The tensor views a state_dict value holds: itself when a tensor; in a quantized state_dict, a quantized
    /// tensor's data (and its per-channel scales and zero points), a tuple's tensors, nothing for None or a dtype.</summary>
    private static IEnumerable<TensorRef> Views(object? value, bool quantized, string path, string key, string where)
    {
        switch (value)
        {
            case TensorRef t: return [t];
            case QTensorRef q when quantized: return q.Scales is { } s && q.ZeroPoints is { } z ? [q.View, s, z] : [q.View];
            case PickleTuple t when quantized && t.Items.All(i => i is not PickleTuple):
                return t.Items.SelectMany(i => Views(i, quantized, path, key, where)).ToList();
            case null or PickleGlobal { Module: "torch", Name: "qint8" or "quint8" } when quantized: return [];
            default:
                throw new ModelFormatException(path, key, quantized
                    ? $"the value is a {TorchUnpickler.Describe(value)}, not a tensor, a quantized tensor, None, a dtype or a tuple of those"
                    : $"the value is a {TorchUnpickler.Describe(value)}, not a tensor{where}");
        }
    }

    /// <summary>A state_dict value with its storages read (see <see cref="TorchValueState"/>).</summary>
    private static object? Value(object? value, Func<TensorRef, byte[]> bytes, string path, string key)
    {
        switch (value)
        {
            case TensorRef t:
                var kind = StorageKind.Of(t.Storage.Type.Name);
                if (kind.Quantized)
                    throw new ModelFormatException(path, key, $"a plain tensor views storage '{t.Storage.Key}' of type {t.Storage.Type}, which only a quantized tensor may");
                return Materialize(bytes(t), t, kind);
            case QTensorRef q:
                var data = Materialize(bytes(q.View), q.View, StorageKind.Of(q.View.Storage.Type.Name)).Int64;
                var values = new int[data.Length];
                for (var i = 0; i < values.Length; i++) values[i] = (int)data[i];
                var signed = q.View.Storage.Type.Name == "QInt8Storage";
                var shape = q.View.Size.Select(d => (int)d).ToArray();
                if (q.Scales is not { } scales || q.ZeroPoints is not { } zps)
                    return new TorchQTensor(signed, shape, values, [q.Scale], [q.ZeroPoint], null);
                if (q.Axis is < 0 or > int.MaxValue)
                    throw new ModelFormatException(path, key, $"the per-channel axis {q.Axis} is out of range");
                var scaleKind = StorageKind.Of(scales.Storage.Type.Name);
                var zpKind = StorageKind.Of(zps.Storage.Type.Name);
                if (!scaleKind.Float || zpKind.Float || zpKind.Quantized)
                    throw new ModelFormatException(path, key, $"per-channel scales are {scales.Storage.Type} and zero points {zps.Storage.Type}; PyTorch writes torch.DoubleStorage and torch.LongStorage");
                var s = Doubles(bytes(scales), scales, scaleKind);
                return new TorchQTensor(signed, shape, values, s, Materialize(bytes(zps), zps, zpKind).Int64.ToArray(), (int)q.Axis);
            case PickleTuple t:
                return t.Items.Select(i => Value(i, bytes, path, key)).ToArray();
            case PickleGlobal g:
                return new TorchDType(g.Name);
            default:
                return null;
        }
    }

    /// <summary>A floating storage's elements as float64, exactly (a quantized tensor's per-channel scales are float64).</summary>
    private static double[] Doubles(byte[] storage, TensorRef view, StorageKind kind)
    {
        var shape = view.Size.Select(d => (int)d).ToArray();
        var values = new double[Tensor.Product(shape)];
        var index = new int[shape.Length];
        var src = view.Offset;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = kind.Name == "DoubleStorage" ? BinaryPrimitives.ReadDoubleLittleEndian(storage.AsSpan((int)(src * 8), 8)) : kind.ReadFloat(storage, src);
            src = Next(index, shape, view.Stride, src);
        }
        return values;
    }

    /// <summary>The <c>_metadata</c> versions by module path (none when the file has no <c>_metadata</c>).</summary>
    private static IReadOnlyList<KeyValuePair<string, long>> Versions(PickleDict state, string path)
    {
        if (state.Attributes is not { } attributes || !attributes.TryGet("_metadata", out var m) || m is not PickleDict metadata) return [];
        var versions = new List<KeyValuePair<string, long>>();
        foreach (var (k, v) in metadata.Items)
            if (k is string module && v is PickleDict entry && entry.TryGet("version", out var version) && version is long n)
                versions.Add(new(module, n));
        return versions;
    }

    /// <summary>The state_dict in the unpickled value: a dict of tensors, or one wrapped under a <see cref="WrapperKeys"/> entry.</summary>
    private static PickleDict FindStateDict(object? root, string path, out string? wrapper)
    {
        wrapper = null;
        if (root is not PickleDict dict)
            throw new ModelFormatException(path, null, $"the checkpoint holds a {TorchUnpickler.Describe(root)}, not a state_dict (a dict of tensors)");
        if (dict.Items.All(kv => kv.Value is TensorRef)) return dict;
        foreach (var w in WrapperKeys)
            if (dict.TryGet(w, out var inner) && inner is PickleDict d && d.Items.Count > 0 && d.Items.All(kv => kv.Value is TensorRef))
            {
                wrapper = w;
                return d;
            }
        var odd = dict.Items.First(kv => kv.Value is not TensorRef);
        throw new ModelFormatException(path, odd.Key as string,
            $"the value is a {TorchUnpickler.Describe(odd.Value)}, not a tensor, and no entry {string.Join(", ", WrapperKeys.Select(k => $"'{k}'"))} " +
            "holds a dict of tensors: the checkpoint is neither a state_dict nor a dict wrapping one");
    }

    private static long CheckedBytes(long count, int size, string path, string key)
    {
        try { return checked(count * size); }
        catch (OverflowException) { throw new ModelFormatException(path, key, $"a storage of {count} elements of {size} bytes has more bytes than 64 bits count"); }
    }

    /// <summary>Checks that the view's sizes, strides and offset stay inside its storage, in checked 64-bit arithmetic.</summary>
    private static void CheckView(TensorRef view, string path, string key)
    {
        var (storage, offset, size, stride) = view;
        if (size.Length != stride.Length)
            throw new ModelFormatException(path, key, $"the tensor has {size.Length} sizes but {stride.Length} strides");
        if (offset < 0) throw new ModelFormatException(path, key, $"storage offset {offset} is negative");
        long count = 1, last = offset;
        for (var d = 0; d < size.Length; d++)
        {
            if (size[d] < 0 || size[d] > int.MaxValue)
                throw new ModelFormatException(path, key, $"size {Shape(size)} has dimension {d} = {size[d]}, outside 0..{int.MaxValue}");
            if (stride[d] < 0)
                throw new ModelFormatException(path, key, $"stride {Shape(stride)} has a negative entry (torch has no negative strides)");
            count *= size[d];   // every factor is below 2^31 and the running product stays below Array.MaxLength (checked next)
            if (count > Array.MaxLength)
                throw new ModelFormatException(path, key, $"size {Shape(size)} has more elements than a tensor can hold ({Array.MaxLength})");
        }
        if (count == 0)
        {
            if (offset > storage.Numel)
                throw new ModelFormatException(path, key, $"storage offset {offset} lies beyond storage '{storage.Key}' of {storage.Numel} elements");
            return;
        }
        try
        {
            for (var d = 0; d < size.Length; d++) last = checked(last + checked((size[d] - 1) * stride[d]));
        }
        catch (OverflowException)
        {
            throw new ModelFormatException(path, key, $"size {Shape(size)}, stride {Shape(stride)} and offset {offset} reach past 64-bit indices");
        }
        if (last >= storage.Numel)
            throw new ModelFormatException(path, key,
                $"the view (offset {offset}, size {Shape(size)}, stride {Shape(stride)}) reads element {last}, but storage '{storage.Key}' holds {storage.Numel} (storage shorter than its tensor)");
    }

    private static string Shape(long[] dims) => "(" + string.Join(", ", dims) + ")";

    private static Tensor Materialize(byte[] storage, TensorRef view, StorageKind kind)
    {
        var shape = view.Size.Select(d => (int)d).ToArray();
        var count = Tensor.Product(shape);
        var rank = shape.Length;
        // Storage index of each element in row-major order, by an odometer over the dimensions.
        var contiguous = true;
        long expected = 1;
        for (var d = rank - 1; d >= 0; d--)
        {
            if (shape[d] != 1 && view.Stride[d] != expected) contiguous = false;
            expected *= shape[d];
        }
        var index = new int[rank];
        var src = view.Offset;
        if (kind.Float)
        {
            var values = new float[count];
            if (contiguous && kind.Size == 4 && BitConverter.IsLittleEndian)
                storage.AsSpan((int)(view.Offset * 4), count * 4).CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
            else
                for (var i = 0; i < count; i++) { values[i] = kind.ReadFloat(storage, contiguous ? view.Offset + i : src); src = Next(index, shape, view.Stride, src); }
            return Tensor.Adopt(values, shape);
        }
        var longs = new long[count];
        for (var i = 0; i < count; i++) { longs[i] = kind.ReadLong(storage, contiguous ? view.Offset + i : src); src = Next(index, shape, view.Stride, src); }
        return Tensor.Adopt(longs, shape);
    }

    private static long Next(int[] index, int[] shape, long[] stride, long src)
    {
        for (var d = index.Length - 1; d >= 0; d--)
        {
            if (++index[d] < shape[d]) return src + stride[d];
            src -= (long)(shape[d] - 1) * stride[d];
            index[d] = 0;
        }
        return src;
    }

    private static byte[] ReadEntry(ZipArchiveEntry entry, string path, string name, long fileLength)
    {
        // torch.save stores entries uncompressed; refusing compression bounds every read by the file's real size.
        if (entry.Length != entry.CompressedLength)
            throw new ModelFormatException(path, name, $"the entry is compressed ({entry.CompressedLength} bytes for {entry.Length}); torch.save stores entries uncompressed");
        if (entry.Length > fileLength)
            throw new ModelFormatException(path, name, $"the entry claims {entry.Length} bytes, more than the whole file ({fileLength} bytes; truncated or corrupt)");
        var bytes = new byte[entry.Length];
        try
        {
            using var s = entry.Open();
            s.ReadExactly(bytes);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or NotSupportedException or ArgumentException)
        {
            throw new ModelFormatException(path, name, $"cannot read the entry (truncated or corrupt file?): {e.Message}", e);
        }
        return bytes;
    }

    private static bool IsZip(ReadOnlySpan<byte> head) =>
        head.Length >= 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6));

    private static bool IsLegacy(ReadOnlySpan<byte> head)
    {
        // The legacy format pickles the magic number first (after PROTO and maybe FRAME); torch before 0.4 wrote a tar.
        if (head.Length >= 2 && head[0] == 0x80 && head[1] is >= 2 and <= 5 && head[..Math.Min(head.Length, 32)].IndexOf(LegacyMagic) >= 0) return true;
        return head.Length >= 262 && head.Slice(257, 5).SequenceEqual("ustar"u8);
    }

    /// <summary>
    /// Writes <paramref name="state"/> as a <c>torch.save(state_dict)</c> zip that <c>torch.load</c> reads into an
    /// <c>OrderedDict</c> with exactly these keys in this order (float32 and int64 tensors, each in a storage of its own).
    /// The file is written through <see cref="OutputFile"/> (a temporary sibling moved into place), so a failure leaves no
    /// partial file.
    /// </summary>
    /// <exception cref="ModelFormatException">A key is null or repeats, a tensor is null, or the target is refused (a
    /// directory, device or pipe) or cannot be written.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> state)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(state);
        var list = state.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, t) in list)
        {
            if (key is null) throw new ModelFormatException(path, null, "a state_dict key is null");
            if (t is null) throw new ModelFormatException(path, key, "the tensor is null");
            if (!seen.Add(key)) throw new ModelFormatException(path, key, "the key appears twice");
        }
        WriteValues(path, new TorchValueState(list.Select(kv => new KeyValuePair<string, object?>(kv.Key, kv.Value)).ToList(), []));
    }

    /// <summary>
    /// Writes a state_dict of values (see <see cref="TorchValueState"/>: tensors, quantized tensors, tuples, None, dtypes)
    /// and its <c>_metadata</c> versions as a <c>torch.save</c> zip, through <see cref="OutputFile"/>.
    /// </summary>
    /// <exception cref="ModelFormatException">A value cannot be pickled, or the target is refused or cannot be written.</exception>
    internal static void WriteValues(string path, TorchValueState state)
    {
        var storages = new List<object>();
        var pickle = TorchPickler.Values(state.Items, state.Versions, path, storages);
        OutputFile.Write(path, stream =>
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
            WriteEntry(zip, "data.pkl", s => s.Write(pickle));
            for (var i = 0; i < storages.Count; i++)
            {
                var payload = storages[i];
                WriteEntry(zip, $"data/{i}", s => WriteStorage(s, payload));
            }
            // torch's reader requires the format version; 3 is what torch 1.6 to 2.x write.
            WriteEntry(zip, "version", s => s.Write("3\n"u8));
            WriteEntry(zip, "byteorder", s => s.Write("little"u8));
        });
    }

    private static void WriteEntry(ZipArchive zip, string name, Action<Stream> write)
    {
        using var s = zip.CreateEntry(ArchiveName + "/" + name, CompressionLevel.NoCompression).Open();
        write(s);
    }

    private static void WriteStorage(Stream s, object payload)
    {
        Span<byte> d = stackalloc byte[8];
        switch (payload)
        {
            case byte[] bytes: s.Write(bytes); return;
            case double[] doubles:
                foreach (var v in doubles) { BinaryPrimitives.WriteDoubleLittleEndian(d, v); s.Write(d); }
                return;
            case long[] longs:
                foreach (var v in longs) { BinaryPrimitives.WriteInt64LittleEndian(d, v); s.Write(d); }
                return;
        }
        var t = (Tensor)payload;
        if (BitConverter.IsLittleEndian)
        {
            if (t.DType == DType.Float32) s.Write(MemoryMarshal.AsBytes(t.Float32));
            else s.Write(MemoryMarshal.AsBytes(t.Int64));
            return;
        }
        Span<byte> b = stackalloc byte[8];
        if (t.DType == DType.Float32)
            foreach (var v in t.Float32) { BinaryPrimitives.WriteSingleLittleEndian(b, v); s.Write(b[..4]); }
        else
            foreach (var v in t.Int64) { BinaryPrimitives.WriteInt64LittleEndian(b, v); s.Write(b); }
    }
}
