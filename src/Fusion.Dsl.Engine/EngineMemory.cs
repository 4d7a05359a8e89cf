using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Engine;

/// <summary>
/// What the engine keeps in memory beside a model for the <see cref="Forward.Run(Module, Tensors.Tensor, ForwardOptions?)"/>
/// calls, for accounting: the packed forms of a model's weights that the first pass builds and every later pass reuses,
/// and the intermediate buffers pooled between passes, both process-wide. An <see cref="EngineSession"/> holds its own
/// and reports them itself (<see cref="EngineSession.PackedWeightBytes"/>, <see cref="EngineSession.PooledBufferBytes"/>);
/// nothing here counts them.
/// </summary>
public static class EngineMemory
{
    /// <summary>
    /// Bytes of the packed forms held for <paramref name="model"/>'s state tensors by the <c>Forward.Run</c> calls: the
    /// GEMM panels of convolution and linear weights and the Winograd-transformed 3x3 weights. They are built by the first
    /// pass that needs them and live as long as the weight tensors; 0 before any pass.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    public static long PackedWeightBytes(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Forward.SharedPacks.BytesOf(model);
    }

    /// <summary>Bytes of intermediate buffers pooled for reuse by later <c>Forward.Run</c> calls (at most 256 MiB, shared
    /// by all models they run).</summary>
    public static long PooledBufferBytes => Forward.SharedPool.Bytes;
}
