using System.Buffers.Binary;
using System.Text;

namespace Fusion.Dsl.IO;

/// <summary>A Python global the unpickler allows: a module and a name (<c>collections.OrderedDict</c>).</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    /// <inheritdoc />
    public override string ToString() => Module + "." + Name;
}

/// <summary>A Python tuple.</summary>
internal sealed record PickleTuple(object?[] Items);

/// <summary>
/// A Python <c>dict</c> or <c>collections.OrderedDict</c>, in insertion order. Keys are strings, integers, floats,
/// booleans or None (what a state_dict and its <c>_metadata</c> use), so hashing a key never walks a nested value.
/// </summary>
internal sealed class PickleDict
{
    private readonly Dictionary<object, int> _index = new();
    private readonly List<KeyValuePair<object?, object?>> _items = new();
    private static readonly object NoneKey = new();

    /// <summary>The entries in insertion order (a repeated key keeps its first position and its last value, as in Python).</summary>
    public IReadOnlyList<KeyValuePair<object?, object?>> Items => _items;

    /// <summary>The attributes set by BUILD (an OrderedDict's <c>_metadata</c>); they carry no tensors.</summary>
    public PickleDict? Attributes { get; set; }

    public void Set(object? key, object? value)
    {
        var k = key ?? NoneKey;
        if (_index.TryGetValue(k, out var i)) _items[i] = new(key, value);
        else
        {
            _index[k] = _items.Count;
            _items.Add(new(key, value));
        }
    }

    public bool TryGet(string key, out object? value)
    {
        if (_index.TryGetValue(key, out var i)) { value = _items[i].Value; return true; }
        value = null;
        return false;
    }
}

/// <summary>A storage named by a persistent id: <c>('storage', torch.FloatStorage, '0', 'cpu', 6)</c>.</summary>
internal sealed record StorageRef(PickleGlobal Type, string Key, string Location, long Numel);

/// <summary>What <c>torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)</c> describes: a view of a storage.</summary>
internal sealed record TensorRef(StorageRef Storage, long Offset, long[] Size, long[] Stride);

/// <summary>
/// What <c>torch._utils._rebuild_qtensor(storage, offset, size, stride, quantizer_params, ...)</c> describes: a view of a
/// <c>QInt8Storage</c> or <c>QUInt8Storage</c> with PyTorch 1.13's quantizer parameters, either
/// <c>(torch.per_tensor_affine, scale, zero_point)</c> (<see cref="Scales"/> null) or
/// <c>(torch.per_channel_affine, scales, zero_points, axis)</c> with the scales and zero points as tensors.
/// </summary>
internal sealed record QTensorRef(TensorRef View, double Scale, long ZeroPoint, TensorRef? Scales, TensorRef? ZeroPoints, long Axis);

/// <summary>
/// A restricted unpickler for the <c>data.pkl</c> of a <c>torch.save</c> checkpoint. It implements the data opcodes of
/// protocols 2 to 5 (what <c>torch.save</c> and <c>pickle</c> write for dicts, lists, tuples, strings, numbers and
/// tensors) and resolves a global only from <see cref="AllowedGlobals"/>: anything else (<c>posix.system</c>,
/// <c>builtins.eval</c>, any class) is refused when the GLOBAL opcode names it, so no callable from the file is ever
/// looked up, let alone run. Calls are interpreted, not executed: <c>OrderedDict()</c> makes an empty dict,
/// <c>_rebuild_tensor_v2</c> a <see cref="TensorRef"/> whose bounds the caller checks against the real storage.
/// The stack, the mark stack and the memo are bounded, every length is checked against the bytes that remain, and
/// nothing here recurses into a value, so a deeply nested pickle cannot overflow the stack.
/// </summary>
internal sealed class TorchUnpickler
{
    /// <summary>Most items on the stack at once.</summary>
    public const int MaxStack = 1 << 20;
    /// <summary>Most open MARKs at once (the nesting depth of tuples, lists and dicts being built).</summary>
    public const int MaxMarks = 1 << 12;
    /// <summary>Most memo entries.</summary>
    public const int MaxMemo = 1 << 20;

    private const string Utils = "torch._utils";
    private const string RebuildTensor = "_rebuild_tensor_v2";

    private const string RebuildQTensor = "_rebuild_qtensor";
    private const string PerTensor = "per_tensor_affine";
    private const string PerChannel = "per_channel_affine";

    /// <summary>Every global a state_dict pickle needs; the rest is refused.</summary>
    internal static readonly IReadOnlySet<string> AllowedGlobals = new HashSet<string>(
        new[] { "collections.OrderedDict", $"{Utils}.{RebuildTensor}", $"{Utils}._rebuild_parameter", $"{Utils}._rebuild_parameter_with_state" }
            .Concat(StorageKind.Names.Select(k => "torch." + k)), StringComparer.Ordinal);

    /// <summary>
    /// What a quantized model's state_dict (PyTorch 1.13's <c>torch.save(qmodel.state_dict())</c>) needs beyond
    /// <see cref="AllowedGlobals"/>: <c>_rebuild_qtensor</c>, the two qschemes it pickles, the 8-bit quantized dtypes
    /// (a quantized Linear's <c>_packed_params.dtype</c>) and the quantized storages. Nothing else.
    /// </summary>
    internal static readonly IReadOnlySet<string> QuantizedGlobals = new HashSet<string>(
        AllowedGlobals.Concat([$"{Utils}.{RebuildQTensor}", "torch." + PerTensor, "torch." + PerChannel, "torch.qint8", "torch.quint8"])
            .Concat(StorageKind.QuantizedNames.Select(k => "torch." + k)), StringComparer.Ordinal);

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
    private static readonly object Mark = new();

    private readonly byte[] _data;
    private readonly IReadOnlySet<string> _allowed;
    private readonly string _source;
    private readonly string _entry;
    private readonly List<object?> _stack = new();
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();
    private int _pos;
    private int _opStart;

    private TorchUnpickler(byte[] data, IReadOnlySet<string> allowed, string source, string entry) { _data = data; _allowed = allowed; _source = source; _entry = entry; }

    /// <summary>Unpickles <paramref name="pickle"/>; errors name the file <paramref name="source"/> and the zip entry <paramref name="entry"/>.</summary>
    /// <exception cref="ModelFormatException">The pickle is malformed, uses an opcode outside the data subset, or names a global outside the allowlist.</exception>
    public static object? Load(byte[] pickle, string source, string entry) => new TorchUnpickler(pickle, AllowedGlobals, source, entry).Run();

    /// <summary>Unpickles a quantized state_dict: as <see cref="Load"/>, with <see cref="QuantizedGlobals"/> allowed.</summary>
    /// <exception cref="ModelFormatException">As <see cref="Load"/>, or a quantized tensor with parameters that are not PyTorch 1.13's.</exception>
    public static object? LoadQuantized(byte[] pickle, string source, string entry) => new TorchUnpickler(pickle, QuantizedGlobals, source, entry).Run();

    private object? Run()
    {
        while (true)
        {
            _opStart = _pos;
            var op = ReadByte();
            switch (op)
            {
                case 0x80: // PROTO
                    var proto = ReadByte();
                    if (proto is < 2 or > 5) throw Fail($"pickle protocol {proto} is not supported (torch.save writes protocol 2)");
                    break;
                case 0x95: Take(8); break;                                   // FRAME: a length hint only
                case (byte)'.':                                              // STOP
                    if (_stack.Count != 1 || _marks.Count != 0) throw Fail($"STOP with {_stack.Count} items on the stack and {_marks.Count} open marks (expected exactly one result)");
                    return _stack[0];
                case (byte)'(': if (_marks.Count >= MaxMarks) throw Fail($"more than {MaxMarks} nested marks"); _marks.Push(_stack.Count); break;
                case (byte)'0': Pop(); break;                                // POP
                case (byte)'1': PopMark(); break;                            // POP_MARK
                case (byte)'2': Push(Peek()); break;                         // DUP
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;                                // NEWTRUE
                case 0x89: Push(false); break;                               // NEWFALSE
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;   // BININT
                case (byte)'K': Push((long)ReadByte()); break;               // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                case 0x8a: Push(Long(ReadByte())); break;                    // LONG1
                case 0x8b: Push(Long(Length(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))); break; // LONG4
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;           // BINFLOAT
                case (byte)'X': Push(Str(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break; // BINUNICODE
                case 0x8c: Push(Str(ReadByte())); break;                     // SHORT_BINUNICODE
                case 0x8d: Push(Str(Length(BinaryPrimitives.ReadInt64LittleEndian(Take(8))))); break;  // BINUNICODE8
                case (byte)'B': Push(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray()); break; // BINBYTES
                case (byte)'C': Push(Take(ReadByte()).ToArray()); break;     // SHORT_BINBYTES
                case 0x8e: Push(Take(Length(BinaryPrimitives.ReadInt64LittleEndian(Take(8)))).ToArray()); break; // BINBYTES8
                case (byte)')': Push(new PickleTuple([])); break;            // EMPTY_TUPLE
                case (byte)'t': Push(new PickleTuple(PopToMark())); break;   // TUPLE
                case 0x85: Push(new PickleTuple([Pop()])); break;            // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b])); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b, c])); break; }
                case (byte)']': Push(new List<object?>()); break;            // EMPTY_LIST
                case (byte)'l': Push(new List<object?>(PopToMark())); break; // LIST
                case (byte)'a': { var v = Pop(); As<List<object?>>(Peek(), "APPEND").Add(v); break; }
                case (byte)'e': { var vs = PopToMark(); As<List<object?>>(Peek(), "APPENDS").AddRange(vs); break; }
                case (byte)'}': Push(new PickleDict()); break;               // EMPTY_DICT
                case (byte)'d': Push(SetItems(new PickleDict(), PopToMark())); break; // DICT
                case (byte)'s': { var v = Pop(); var k = Pop(); SetItems(As<PickleDict>(Peek(), "SETITEM"), [k, v]); break; }
                case (byte)'u': { var kvs = PopToMark(); SetItems(As<PickleDict>(Peek(), "SETITEMS"), kvs); break; }
                case (byte)'c': Push(Global(Line(), Line())); break;         // GLOBAL
                case 0x93: { var name = Pop(); var module = Pop(); Push(Global(As<string>(module, "STACK_GLOBAL"), As<string>(name, "STACK_GLOBAL"))); break; }
                case (byte)'R': { var args = As<PickleTuple>(Pop(), "REDUCE"); Push(Call(Pop(), args)); break; }
                case 0x81: { var args = As<PickleTuple>(Pop(), "NEWOBJ"); Push(Call(Pop(), args)); break; }
                case (byte)'b': Build(); break;
                case (byte)'Q': Push(PersistentLoad(Pop())); break;          // BINPERSID
                case (byte)'q': Memo(ReadByte()); break;                     // BINPUT
                case (byte)'r': Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break; // LONG_BINPUT
                case 0x94: Memo(_memo.Count); break;                         // MEMOIZE
                case (byte)'h': Push(Recall(ReadByte())); break;             // BINGET
                case (byte)'j': Push(Recall(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                default:
                    throw Fail($"pickle opcode 0x{op:x2} ('{(op is >= 0x20 and < 0x7f ? (char)op : '?')}') is not one a state_dict uses; refused");
            }
        }
    }

    private object Global(string module, string name)
    {
        var full = module + "." + name;
        if (!_allowed.Contains(full))
            throw Fail(ReferenceEquals(_allowed, QuantizedGlobals)
                ? $"the pickle asks for the global '{full}', which a quantized state_dict does not need; refused without running anything " +
                  "(PyTorch 1.13's torch.save(qmodel.state_dict()) names only collections.OrderedDict, torch._utils._rebuild_tensor_v2, " +
                  "_rebuild_parameter and _rebuild_qtensor, torch.per_tensor_affine, torch.per_channel_affine, torch.qint8, torch.quint8 " +
                  "and torch.*Storage types; save qmodel.state_dict(), not the model or other objects)"
                : $"the pickle asks for the global '{full}', which a state_dict does not need; refused without running anything " +
                  "(a torch.save(model.state_dict()) file only names collections.OrderedDict, torch._utils._rebuild_tensor_v2, " +
                  "torch._utils._rebuild_parameter and torch.*Storage types; save model.state_dict(), not the model or other objects)");
        return new PickleGlobal(module, name);
    }

    private object? Call(object? callable, PickleTuple args)
    {
        if (callable is not PickleGlobal g) throw Fail($"REDUCE calls a {Describe(callable)}, not an allowed global");
        var a = args.Items;
        switch (g.Module, g.Name)
        {
            case ("collections", "OrderedDict"):
                if (a.Length != 0) throw Fail("collections.OrderedDict is called with arguments (torch.save writes OrderedDict() and then its items)");
                return new PickleDict();
            case (Utils, RebuildTensor):
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) in torch 1.x and 2.x.
                if (a.Length is < 6 or > 7) throw Fail($"{g} takes 6 or 7 arguments, got {a.Length}");
                var storage = As<StorageRef>(a[0], $"{g} argument 0 (the storage)");
                var offset = As<long>(a[1], $"{g} argument 1 (the storage offset)");
                var size = Longs(a[2], $"{g} argument 2 (the size)");
                var stride = Longs(a[3], $"{g} argument 3 (the stride)");
                As<bool>(a[4], $"{g} argument 4 (requires_grad)");
                return new TensorRef(storage, offset, size, stride);
            case (Utils, RebuildQTensor):
                return QTensor(g, a);
            case (Utils, "_rebuild_parameter" or "_rebuild_parameter_with_state"):
                // (data, requires_grad, backward_hooks[, state]): a Parameter is its data here.
                if (a.Length is < 3 or > 4) throw Fail($"{g} takes 3 or 4 arguments, got {a.Length}");
                return As<TensorRef>(a[0], $"{g} argument 0 (the data)");
            default:
                throw Fail($"the global '{g}' cannot be called (it names a storage type, a dtype or a qscheme, which appear only as values)");
        }
    }

    /// <summary><c>_rebuild_qtensor(storage, offset, size, stride, quantizer_params, requires_grad, backward_hooks)</c>.</summary>
    private QTensorRef QTensor(PickleGlobal g, object?[] a)
    {
        if (a.Length != 7) throw Fail($"{g} takes 7 arguments, got {a.Length}");
        var storage = As<StorageRef>(a[0], $"{g} argument 0 (the storage)");
        if (!StorageKind.Of(storage.Type.Name).Quantized)
            throw Fail($"{g} views storage '{storage.Key}' of type {storage.Type}, not torch.QInt8Storage or torch.QUInt8Storage");
        var view = new TensorRef(storage, As<long>(a[1], $"{g} argument 1 (the storage offset)"),
            Longs(a[2], $"{g} argument 2 (the size)"), Longs(a[3], $"{g} argument 3 (the stride)"));
        As<bool>(a[5], $"{g} argument 5 (requires_grad)");
        var q = As<PickleTuple>(a[4], $"{g} argument 4 (the quantizer parameters)").Items;
        return q switch
        {
            [PickleGlobal { Module: "torch", Name: PerTensor }, var scale, var zp] =>
                new QTensorRef(view, As<double>(scale, "a per-tensor scale"), As<long>(zp, "a per-tensor zero point"), null, null, 0),
            [PickleGlobal { Module: "torch", Name: PerChannel }, var scales, var zps, var axis] =>
                new QTensorRef(view, 0, 0, As<TensorRef>(scales, "per-channel scales"), As<TensorRef>(zps, "per-channel zero points"), As<long>(axis, "a per-channel axis")),
            _ => throw Fail($"{g}'s quantizer parameters are {Describe(a[4])} starting with {(q.Length > 0 ? Describe(q[0]) : "nothing")}, " +
                            "not (torch.per_tensor_affine, scale, zero_point) or (torch.per_channel_affine, scales, zero_points, axis)"),
        };
    }

    private void Build()
    {
        var state = Pop();
        // OrderedDict.__reduce__ hands its instance __dict__ (a state_dict's _metadata) to BUILD.
        if (Peek() is not PickleDict target || state is not PickleDict attributes)
            throw Fail($"BUILD sets the state of a {Describe(Peek())} to a {Describe(state)}; only a dict's attributes (its _metadata) may be set");
        foreach (var (k, _) in attributes.Items)
            if (k is not string) throw Fail($"BUILD sets an attribute named by a {Describe(k)}");
        target.Attributes = attributes;
    }

    private StorageRef PersistentLoad(object? pid)
    {
        // torch.save's persistent id: ('storage', storage_type, key, location, numel).
        if (pid is not PickleTuple { Items: [string tag, PickleGlobal type, string key, string location, long numel] } || tag != "storage")
            throw Fail($"persistent id {Describe(pid)} is not ('storage', torch.<Type>Storage, key, location, numel)");
        if (type.Module != "torch" || !StorageKind.IsKnown(type.Name))
            throw Fail($"persistent id names {type}, not a storage type");
        if (numel < 0) throw Fail($"storage '{key}' declares {numel} elements");
        return new StorageRef(type, key, location, numel);
    }

    private PickleDict SetItems(PickleDict dict, object?[] keysAndValues)
    {
        if (keysAndValues.Length % 2 != 0) throw Fail($"a dict is given {keysAndValues.Length} items, not key-value pairs");
        for (var i = 0; i < keysAndValues.Length; i += 2)
        {
            var k = keysAndValues[i];
            if (k is not (null or string or long or bool or double))
                throw Fail($"a dict key is a {Describe(k)} (a state_dict's keys are strings)");
            dict.Set(k, keysAndValues[i + 1]);
        }
        return dict;
    }

    private long[] Longs(object? value, string what)
    {
        var t = As<PickleTuple>(value, what);
        var result = new long[t.Items.Length];
        for (var i = 0; i < result.Length; i++) result[i] = As<long>(t.Items[i], what);
        return result;
    }

    private long Long(int byteCount)
    {
        // Two's complement, little-endian; torch's integers (sizes, strides, offsets) fit in 64 bits.
        if (byteCount > 8) throw Fail($"an integer of {byteCount} bytes does not fit in 64 bits");
        var bytes = Take(byteCount);
        long v = 0;
        for (var i = byteCount - 1; i >= 0; i--) v = (v << 8) | bytes[i];
        if (byteCount is > 0 and < 8 && (bytes[byteCount - 1] & 0x80) != 0) v -= 1L << (8 * byteCount);
        return v;
    }

    private string Str(int byteCount)
    {
        try { return StrictUtf8.GetString(Take(byteCount)); }
        catch (DecoderFallbackException) { throw Fail("a string is not valid UTF-8"); }
    }

    private string Line()
    {
        var end = Array.IndexOf(_data, (byte)'\n', _pos);
        if (end < 0) throw Fail("GLOBAL's name runs to the end of the pickle without a newline");
        var s = Str(end - _pos);
        _pos++;
        return s;
    }

    private int Length(long declared)
    {
        if (declared < 0 || declared > _data.Length - _pos)
            throw Fail($"a length of {declared} runs past the end of the pickle ({_data.Length - _pos} bytes remain)");
        return (int)declared;
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > _data.Length - _pos) throw Fail($"the pickle ends in the middle of an opcode (truncated)");
        var span = _data.AsSpan(_pos, count);
        _pos += count;
        return span;
    }

    private byte ReadByte()
    {
        if (_pos >= _data.Length) throw Fail("the pickle ends without STOP (truncated)");
        return _data[_pos++];
    }

    private void Memo(long index)
    {
        if (_memo.Count >= MaxMemo && !_memo.ContainsKey(index)) throw Fail($"more than {MaxMemo} memo entries");
        _memo[index] = Peek();
    }

    private object? Recall(long index) => _memo.TryGetValue(index, out var v) ? v : throw Fail($"memo entry {index} is read before it is written");

    private void Push(object? value)
    {
        if (_stack.Count >= MaxStack) throw Fail($"more than {MaxStack} items on the pickle stack");
        _stack.Add(value);
    }

    private object? Pop()
    {
        var floor = _marks.Count > 0 ? _marks.Peek() : 0;
        if (_stack.Count <= floor) throw Fail("an opcode pops from an empty stack (or across a MARK)");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    private object? Peek()
    {
        var floor = _marks.Count > 0 ? _marks.Peek() : 0;
        if (_stack.Count <= floor) throw Fail("an opcode reads from an empty stack (or across a MARK)");
        return _stack[^1];
    }

    private object?[] PopToMark()
    {
        if (_marks.Count == 0) throw Fail("an opcode needs a MARK that was never set");
        var start = _marks.Pop();
        var items = _stack.GetRange(start, _stack.Count - start).ToArray();
        _stack.RemoveRange(start, _stack.Count - start);
        return items;
    }

    private void PopMark() => _ = PopToMark();

    private T As<T>(object? value, string what)
    {
        if (value is T t) return t;
        throw Fail($"{what} expects a {PythonName(typeof(T))}, got a {Describe(value)}");
    }

    /// <summary>A value's kind in Python's words, never recursing into it.</summary>
    internal static string Describe(object? value) => value switch
    {
        null => "None",
        string s => $"str '{(s.Length > 40 ? s[..40] + "..." : s)}'",
        long l => $"int {l}",
        bool b => b ? "True" : "False",
        double d => $"float {d}",
        byte[] => "bytes",
        PickleTuple t => $"tuple of {t.Items.Length}",
        List<object?> l => $"list of {l.Count}",
        PickleDict d => $"dict of {d.Items.Count}",
        PickleGlobal g => $"global {g}",
        StorageRef s => $"storage '{s.Key}'",
        TensorRef => "tensor",
        QTensorRef => "quantized tensor",
        _ => value.GetType().Name,
    };

    private static string PythonName(Type t) =>
        t == typeof(long) ? "int" : t == typeof(bool) ? "bool" : t == typeof(string) ? "str" : t == typeof(PickleTuple) ? "tuple"
        : t == typeof(PickleDict) ? "dict" : t == typeof(List<object?>) ? "list" : t == typeof(StorageRef) ? "storage" : t == typeof(TensorRef) ? "tensor" : t == typeof(double) ? "float" : t.Name;

    private ModelFormatException Fail(string problem) => new(_source, _entry, $"{problem} (at byte {_opStart} of the pickle)");
}
