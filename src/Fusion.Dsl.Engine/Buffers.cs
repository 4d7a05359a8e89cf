using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Storage for the tensors kernels produce. A fresh multi-megabyte array costs more in page faults on first touch
/// than a 1×1 convolution costs in arithmetic, so during a forward pass whose intermediates cannot escape (no hooks
/// anywhere in the model) the evaluator hands dead intermediates back here and later layers reuse their arrays.
/// <para>
/// Safety rests on ownership: only arrays rented during the current pass (<see cref="Arena"/>) are ever recycled, the
/// pass's input and result never are, and an array is released only when no live value shares it (views made by
/// reshape/flatten/Identity share their source's array, so releases compare storage, not tensors).
/// </para>
/// </summary>
internal static class Buffers
{
    [ThreadStatic] private static Arena? _current;

    /// <summary>Arrays kept per exact length (a tensor's storage must match its element count).</summary>
    private const int PerLength = 8;

    /// <summary>Upper bound on the floats the pool keeps alive between passes (256 MiB).</summary>
    private const long MaxPooledFloats = 1L << 26;

    private static readonly ConcurrentDictionary<int, ConcurrentStack<float[]>> Pool = new();
    private static long _pooledFloats;

    /// <summary>An array for a kernel's output; its contents are unspecified (every kernel writes all of it).</summary>
    public static float[] Output(int length)
    {
        // Every kernel's result comes through here: the one place an output's size is held to the tensor limit.
        if ((uint)length > Limits.MaxElements)
            throw new EngineInputException($"the output would hold {length} elements, over the limit of {Limits.MaxElements} per tensor");
        var arena = _current;
        if (arena is null || length < MinPooledLength) return GC.AllocateUninitializedArray<float>(length);
        if (Pool.TryGetValue(length, out var stack) && stack.TryPop(out var array))
            Interlocked.Add(ref _pooledFloats, -length);
        else array = GC.AllocateUninitializedArray<float>(length);
        arena.Owned.Add(array);
        return array;
    }

    /// <summary>An output array filled with zeros (for kernels that accumulate into their output).</summary>
    public static float[] Zeroed(int length)
    {
        var array = Output(length);
        Array.Clear(array);
        return array;
    }

    /// <summary>Small arrays are cheap to allocate; recycling them is not worth the bookkeeping.</summary>
    private const int MinPooledLength = 1 << 12;

    /// <summary>
    /// Gives <paramref name="dead"/>'s storage back unless it belongs to someone else (not rented in this pass) or a
    /// value in <paramref name="keep"/> shares it.
    /// </summary>
    public static void Release(Tensor dead, params ReadOnlySpan<Tensor?> keep)
    {
        var arena = _current;
        if (arena is null || dead.DType != DType.Float32) return;
        var storage = dead.RawFloat32;
        foreach (var k in keep)
            if (k is not null && k.DType == DType.Float32 && ReferenceEquals(k.RawFloat32, storage)) return;
        if (!arena.Owned.Remove(storage)) return;
        if (Interlocked.Read(ref _pooledFloats) + storage.Length > MaxPooledFloats) return;
        var stack = Pool.GetOrAdd(storage.Length, _ => new ConcurrentStack<float[]>());
        if (stack.Count >= PerLength) return;
        stack.Push(storage);
        Interlocked.Add(ref _pooledFloats, storage.Length);
    }

    /// <summary>Bytes of the arrays pooled for later passes.</summary>
    public static long PooledBytes => Interlocked.Read(ref _pooledFloats) * sizeof(float);

    /// <summary>Whether recycling is on for the pass running on this thread.</summary>
    public static bool Recycling => _current is not null;

    /// <summary>
    /// Starts recycling for a pass over <paramref name="model"/> on this thread when nothing in it can see an
    /// intermediate tensor (no pre-hooks or hooks anywhere); dispose to end it. Nested passes (a hook running
    /// <c>Forward.Run</c>) get their own scope and restore the outer one.
    /// </summary>
    public static Scope Enter(Module model) => new(HookFree(model) ? new Arena() : null);

    /// <summary>Restores the previous arena of this thread when the pass ends.</summary>
    internal readonly struct Scope : IDisposable
    {
        private readonly Arena? _previous;

        public Scope(Arena? arena)
        {
            _previous = _current;
            _current = arena;
        }

        public void Dispose() => _current = _previous;
    }

    /// <summary>The arrays rented during one pass and not yet released (compared by reference).</summary>
    internal sealed class Arena
    {
        public HashSet<float[]> Owned { get; } = new(ReferenceEqualityComparer.Instance);
    }

    private static readonly ConditionalWeakTable<Module, StrongBox<bool>> HookFreeCache = new();

    /// <summary>Whether no module of the tree has hooks (memoised per tree: modules are immutable).</summary>
    private static bool HookFree(Module model)
        => HookFreeCache.GetValue(model, m => new StrongBox<bool>(
            m.PreHooks.Length == 0 && m.Hooks.Length == 0 && m.Children.All(c => HookFree(c.Module)))).Value;
}
