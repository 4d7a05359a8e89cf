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
/// When no module of the model has hooks (so no intermediate tensor can be observed), the storage of intermediates
/// is recycled as soon as they are dead, within the pass and across passes; up to 256 MiB of such buffers stay
/// pooled between passes. Tensors returned to the caller are never reused.
/// </para>
/// </summary>
public static class Forward
{
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
        if (input.DType != DType.Float32)
            throw new ForwardException("", module.TypeName, $"the input must be float32, got {input.DType} of shape {Tensor.ShapeString(input.Shape)}");
        var threads = (options ?? ForwardOptions.Default).ResolvedThreads;
        using var recycling = Buffers.Enter(module);
        return new Evaluator(threads).Call(module, input, "");
    }
}
