using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Evaluates a module on a batch with PyTorch's float semantics: every layer of the algebra, containers in order,
/// user containers through their forward graph, forward pre-hooks and hooks around every call.
/// <para>
/// Pure: the module is never changed. BatchNorm in training mode (or without running statistics) normalises with
/// the batch's own statistics, as PyTorch does, but does not update <c>running_mean</c>/<c>running_var</c>/
/// <c>num_batches_tracked</c> — modules are immutable values, so a training-mode pass here is PyTorch's pass minus
/// its side effect on the buffers. Dropout is the identity in eval mode; in training mode (where PyTorch's result is
/// random) it is refused unless <c>p</c> is 0 or 1.
/// </para>
/// <para>
/// Fused groups run as one kernel: a <c>FusedModule</c> of (Conv or Linear[, eval BatchNorm][, activation]) makes a
/// single pass whose write-out adds the bias, applies the BatchNorm's scale and shift and the activation; a
/// <c>BNReLU</c> is one pass too. A plain <c>Sequential</c> of the same layers runs layer by layer.
/// </para>
/// <para>
/// <see cref="Run(Module, Tensor, ForwardOptions?)"/> is the convenience form of <see cref="EngineSession"/>: each call
/// runs a short-lived session over one process-wide default store of packed weights and one process-wide pool of
/// intermediate buffers, so repeated calls on a model pack its weights once, as they always have. Those packs are kept
/// per weight tensor, weakly: they go when the model's tensors are collected, and a model and its fused copy share
/// the packs of the layers fusion left alone. The pool keeps at most 256 MiB for every caller together, recycled only
/// when the model has no hooks (so no intermediate can be observed); tensors returned are never reused. A service
/// that must release a model's memory at a known point, or give models separate thread or memory budgets, opens an
/// <see cref="EngineSession"/> instead (docs/decisions/engine-session.md). <see cref="EngineMemory"/> accounts for the
/// process-wide stores.
/// </para>
/// </summary>
public static class Forward
{
    /// <summary>The packed weights of every <see cref="Run(Module, Tensor, ForwardOptions?)"/> call (weakly per tensor).</summary>
    internal static PackStore SharedPacks { get; } = new();

    /// <summary>The intermediate buffers pooled by every <see cref="Run(Module, Tensor, ForwardOptions?)"/> call.</summary>
    internal static BufferPool SharedPool { get; } = new(BufferPool.DefaultMaxBytes);

    /// <summary>Runs <paramref name="module"/> on <paramref name="input"/> using every core.</summary>
    /// <exception cref="ForwardException">The input is not float32 or does not fit a module, a size would pass the limits, or a
    /// module cannot run (see the message for the path).</exception>
    public static Tensor Run(Module module, Tensor input) => Run(module, input, null);

    /// <summary>Runs <paramref name="module"/> on <paramref name="input"/> with <paramref name="options"/>.</summary>
    /// <exception cref="ForwardException">The input is not float32 or does not fit a module, a size would pass the limits, or a
    /// module cannot run (see the message for the path).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="ForwardOptions.Threads"/> is not positive.</exception>
    public static Tensor Run(Module module, Tensor input, ForwardOptions? options)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(input);
        var threads = (options ?? ForwardOptions.Default).ResolvedThreads;
        using var session = EngineSession.Borrowing(module, threads, SharedPacks, SharedPool);
        return session.Run(input);
    }
}
