using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// A model opened for forward passes: the session owns the packed forms of the model's weights (built by the first pass
/// that needs each, reused by every later one) and a pool of intermediate buffers bounded by
/// <see cref="EngineSessionOptions.MaxPooledBufferBytes"/>, and runs every pass on at most
/// <see cref="EngineSessionOptions.Threads"/> cores. Disposing it releases both at once, so a service that loads and drops
/// models gets their memory back, and two models in one process get separate thread and memory budgets.
/// <code>
/// using var session = EngineSession.Open(model, new EngineSessionOptions { Threads = 2 });
/// var y = session.Run(x);
/// </code>
/// <para>
/// <see cref="Run"/> gives the same bits as <see cref="Forward.Run(Module, Tensor)"/> and may be called from several
/// threads at once (the passes then share the packs and the pool); sessions share nothing, so passes of two sessions
/// on two threads run side by side. When the model has hooks, intermediates can be observed, so none is recycled (the
/// pool stays empty); packs are still kept.
/// </para>
/// </summary>
public sealed class EngineSession : IDisposable
{
    private readonly PackStore _packs;
    private readonly BufferPool _pool;

    /// <summary>Whether no module of the tree has hooks: decided once, since modules are immutable values.</summary>
    private readonly bool _hookFree;

    /// <summary>False for <see cref="Forward.Run(Module, Tensor, ForwardOptions?)"/>'s short-lived sessions, which borrow
    /// the process-wide stores and must leave them as they are when disposed.</summary>
    private readonly bool _ownsStores;

    private int _disposed;

    private EngineSession(Module model, int threads, PackStore packs, BufferPool pool, bool ownsStores)
    {
        Model = model;
        Threads = threads;
        _packs = packs;
        _pool = pool;
        _ownsStores = ownsStores;
        _hookFree = HookFree(model);
    }

    /// <summary>Opens <paramref name="model"/> with the default options: every core, up to 256 MiB of pooled buffers.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    public static EngineSession Open(Module model) => Open(model, null);

    /// <summary>Opens <paramref name="model"/> with <paramref name="options"/> (the defaults when null). Nothing is packed
    /// yet: the first pass packs what it needs.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="EngineSessionOptions.Threads"/> is not positive, or
    /// <see cref="EngineSessionOptions.MaxPooledBufferBytes"/> is negative.</exception>
    public static EngineSession Open(Module model, EngineSessionOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        var o = options ?? EngineSessionOptions.Default;
        return new EngineSession(model, o.ResolvedThreads, new PackStore(), new BufferPool(o.ResolvedMaxPooledBufferBytes), ownsStores: true);
    }

    /// <summary>A session over stores it does not own (<see cref="Forward"/>'s process-wide ones): disposing it leaves them.</summary>
    internal static EngineSession Borrowing(Module model, int threads, PackStore packs, BufferPool pool)
        => new(model, threads, packs, pool, ownsStores: false);

    /// <summary>The model the session runs.</summary>
    public Module Model { get; }

    /// <summary>The most cores one pass uses.</summary>
    public int Threads { get; }

    /// <summary>The most bytes of intermediate buffers the session keeps pooled.</summary>
    public long MaxPooledBufferBytes => _pool.MaxBytes;

    /// <summary>Bytes of the packed forms of the model's weights the session holds (GEMM panels, Winograd's transformed
    /// 3×3 weights, 16/9 the size of the weight); 0 before the first pass and after <see cref="Dispose"/>.</summary>
    public long PackedWeightBytes => _packs.Bytes;

    /// <summary>Bytes of intermediate buffers pooled for reuse now (at most <see cref="MaxPooledBufferBytes"/>); 0 after
    /// <see cref="Dispose"/>.</summary>
    public long PooledBufferBytes => _pool.Bytes;

    /// <summary>The most bytes of buffers that were ever pooled at once since the session opened (at most
    /// <see cref="MaxPooledBufferBytes"/>): what the limit has had to hold.</summary>
    public long PeakPooledBufferBytes => _pool.PeakBytes;

    /// <summary>
    /// Runs the model on <paramref name="input"/> with PyTorch's float semantics (see <see cref="Forward"/>). The model is
    /// not changed, and a tensor returned is never reused by a later pass.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The session was disposed.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="input"/> is null.</exception>
    /// <exception cref="ForwardException">The input is not float32 or does not fit a module, a size would pass the limits,
    /// or a module cannot run (see the message for the path).</exception>
    public Tensor Run(Tensor input)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType != DType.Float32)
            throw new ForwardException("", Model.TypeName, $"the input must be float32, got {input.DType} of shape {Tensor.ShapeString(input.Shape)}");
        var pass = new Pass(Threads, _packs, _hookFree ? _pool : null);
        return new Evaluator(pass).Call(Model, input, "");
    }

    /// <summary>
    /// Releases the packed weights and the pooled buffers; a later <see cref="Run"/> throws
    /// <see cref="ObjectDisposedException"/>. A pass already running on another thread finishes with the packs it holds,
    /// and what it packs or gives back afterwards is not kept. Calling it again does nothing.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0 || !_ownsStores) return;
        _packs.Close();
        _pool.Close();
    }

    /// <summary>Whether no module of the tree has pre-hooks or hooks; a module shared by several parents is visited once.</summary>
    private static bool HookFree(Module model)
    {
        var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        var pending = new Stack<Module>([model]);
        while (pending.TryPop(out var m))
        {
            if (!seen.Add(m)) continue;
            if (m.PreHooks.Length != 0 || m.Hooks.Length != 0) return false;
            foreach (var c in m.Children) pending.Push(c.Module);
        }
        return true;
    }
}
