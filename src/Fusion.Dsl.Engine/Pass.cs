using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// What one forward pass works with: its thread budget, the store its weight packs come from and, when nothing in the
/// model can observe an intermediate tensor (no pre-hooks or hooks anywhere), the pool its outputs are recycled
/// through. Kernels are handed it rather than finding it in a static, so two passes on two threads share only what
/// their sessions share, and a pass nested in a hook (a hook calling <c>Forward.Run</c>) is simply another pass.
/// <para>
/// Recycling is safe by ownership: only arrays this pass handed out (<see cref="Output"/>) are ever given back, the
/// pass's input and result never are, and an array is given back only when no live value shares it (views made by
/// reshape/flatten/Identity share their source's array, so releases compare storage, not tensors).
/// </para>
/// </summary>
internal sealed class Pass
{
    private readonly PackStore _packs;
    private readonly BufferPool? _pool;

    /// <summary>The arrays handed out by this pass and not given back (compared by reference). Only the pass's own thread
    /// touches it: kernels take their outputs before they fan out to other cores.</summary>
    private readonly HashSet<float[]> _owned = new(ReferenceEqualityComparer.Instance);

    /// <summary>A pass on up to <paramref name="threads"/> cores, recycling through <paramref name="pool"/> unless it is null.</summary>
    public Pass(int threads, PackStore packs, BufferPool? pool)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        Threads = threads;
        _packs = packs;
        _pool = pool;
    }

    /// <summary>The most cores a kernel of this pass uses.</summary>
    public int Threads { get; }

    /// <summary>Whether dead intermediates are recycled (the model has no hooks).</summary>
    public bool Recycling => _pool is not null;

    /// <summary>An array for a kernel's output; its contents are unspecified (every kernel writes all of it).</summary>
    public float[] Output(int length)
    {
        RequireLimit(length);
        if (_pool is null || length < BufferPool.MinPooledLength) return GC.AllocateUninitializedArray<float>(length);
        var array = _pool.TryTake(length) ?? GC.AllocateUninitializedArray<float>(length);
        _owned.Add(array);
        return array;
    }

    /// <summary>
    /// An output array from no pool, for the layout kernels that are not handed a pass (permute, gather, window
    /// partitioning); never recycled, since only arrays a pass handed out go back to its pool. Every kernel's result
    /// comes through here or <see cref="Output"/>: the places an output's size is held to the tensor limit.
    /// </summary>
    public static float[] Fresh(int length)
    {
        RequireLimit(length);
        return GC.AllocateUninitializedArray<float>(length);
    }

    private static void RequireLimit(int length)
    {
        if ((uint)length > Limits.MaxElements)
            throw new EngineInputException($"the output would hold {length} elements, over the limit of {Limits.MaxElements} per tensor");
    }

    /// <summary>An output array filled with zeros (for kernels that accumulate into their output).</summary>
    public float[] Zeroed(int length)
    {
        var array = Output(length);
        Array.Clear(array);
        return array;
    }

    /// <summary>
    /// Gives <paramref name="dead"/>'s storage back to the pool unless it belongs to someone else (not handed out by this
    /// pass) or a value in <paramref name="keep"/> shares it.
    /// </summary>
    public void Release(Tensor dead, params ReadOnlySpan<Tensor?> keep)
    {
        if (_pool is null || dead.DType != DType.Float32) return;
        var storage = dead.RawFloat32;
        foreach (var k in keep)
            if (k is not null && k.DType == DType.Float32 && ReferenceEquals(k.RawFloat32, storage)) return;
        if (_owned.Remove(storage)) _pool.Give(storage);
    }

    /// <summary>The packed form of <paramref name="weight"/> for <paramref name="layout"/>, from the session's store.</summary>
    public float[] Pack(Tensor weight, (int Kind, int Groups, int Extra) layout, Func<float[]> pack) => _packs.Get(weight, layout, pack);
}
