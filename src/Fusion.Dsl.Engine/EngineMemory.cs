using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// What the engine keeps in memory beside a model, for accounting (<c>fusion bench --memory</c> splits a process's peak
/// working set with it): the packed forms of a model's weights that the first pass builds and every later pass reuses, and
/// the intermediate buffers pooled between passes.
/// </summary>
public static class EngineMemory
{
    /// <summary>
    /// Bytes of the packed forms the engine holds for <paramref name="model"/>'s state tensors: the GEMM panels of
    /// convolution and linear weights and the Winograd-transformed 3x3 weights. They are built by the first forward pass
    /// that needs them and live as long as the weight tensors; 0 before any pass.
    /// </summary>
    public static long PackedWeightBytes(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        // A tensor shared by two keys (tied weights) has one set of packs: count it once.
        return new HashSet<Tensor>(model.StateDict().Select(kv => kv.Value), ReferenceEqualityComparer.Instance).Sum(Gemm.CachedBytes);
    }

    /// <summary>Bytes of intermediate buffers pooled for reuse by later forward passes (at most 256 MiB, shared by all models).</summary>
    public static long PooledBufferBytes => Buffers.PooledBytes;
}
