using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The packed forms of weight tensors (GEMM panels of convolution and linear weights, Winograd's transformed 3×3
/// weights), one per tensor and layout, built by the first pass that needs them and reused by every later one. Tensors
/// are immutable, so a pack never goes stale. Keyed weakly by tensor: a pack never outlives its weight, and a tensor
/// shared by two layers (or by a model and its fused copy) is packed once. Each <see cref="EngineSession"/> owns one
/// and closes it when disposed; the <see cref="Forward.Run(Module, Tensor, ForwardOptions?)"/> calls share one
/// process-wide.
/// </summary>
internal sealed class PackStore
{
    private readonly ConditionalWeakTable<Tensor, ConcurrentDictionary<(int, int, int), float[]>> _packs = new();
    private volatile bool _closed;

    /// <summary>
    /// The pack of <paramref name="weight"/> for <paramref name="layout"/>, computed by <paramref name="pack"/> the first
    /// time. A closed store computes it and keeps nothing.
    /// </summary>
    public float[] Get(Tensor weight, (int Kind, int Groups, int Extra) layout, Func<float[]> pack)
    {
        if (_closed) return pack();
        var packed = _packs.GetValue(weight, _ => new()).GetOrAdd(layout, _ => pack());
        // Closed while this packed (a Run racing Dispose on another thread): drop what it added, so a disposed session
        // holds nothing.
        if (_closed) _packs.Clear();
        return packed;
    }

    /// <summary>Bytes of every pack held for <paramref name="weight"/> (0 before a pass has packed it).</summary>
    public long BytesOf(Tensor weight)
        => _packs.TryGetValue(weight, out var packs) ? Sum(packs) : 0;

    /// <summary>Bytes of the packs held for <paramref name="model"/>'s state tensors, a tensor under two keys (tied
    /// weights) counted once.</summary>
    public long BytesOf(Module model)
        => new HashSet<Tensor>(model.StateDict().Select(kv => kv.Value), ReferenceEqualityComparer.Instance).Sum(BytesOf);

    /// <summary>Bytes of every pack held.</summary>
    public long Bytes => ((IEnumerable<KeyValuePair<Tensor, ConcurrentDictionary<(int, int, int), float[]>>>)_packs).Sum(kv => Sum(kv.Value));

    /// <summary>Drops every pack and keeps none from now on.</summary>
    public void Close()
    {
        _closed = true;
        _packs.Clear();
    }

    private static long Sum(ConcurrentDictionary<(int, int, int), float[]> packs) => packs.Values.Sum(p => (long)p.Length * sizeof(float));
}
