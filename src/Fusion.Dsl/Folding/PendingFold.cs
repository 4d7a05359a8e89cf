using System.Runtime.CompilerServices;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Folding;

/// <summary>The recipe of a folded weight not computed yet: <see cref="Source"/> scaled per output channel by
/// <see cref="ChannelScale"/> (float64, rounded to float32 once per element), and the function computing it. The engine
/// packs a weight straight from this recipe, so fusion writes no copy of the model's weights.</summary>
internal sealed class PendingFold(float[] source, double[] channelScale, Func<float[]> compute) : DeferredElements
{
    /// <summary>The elements of the weight before folding (its storage, shared, never written).</summary>
    public float[] Source { get; } = source;

    /// <summary>One factor per output channel of the layer.</summary>
    public double[] ChannelScale { get; } = channelScale;

    /// <inheritdoc />
    public override int Count => Source.Length;

    /// <inheritdoc />
    public override float[] Compute() => compute();

    /// <summary>One folded element: the float64 product rounded to float32 once, the fold's only rounding. Everything that
    /// computes folded values (the fold itself, the engine packing from a recipe) goes through this formula.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Element(float weight, double scale) => (float)(weight * scale);

    /// <summary>
    /// A float32 tensor shaped like <paramref name="source"/> whose elements <paramref name="compute"/> returns when first
    /// read: the fold of <paramref name="source"/> with <paramref name="channelScale"/>. <paramref name="compute"/> must be
    /// pure and return a new array of <c>source.Count</c> elements; it runs at most once. The recipe holds the source's
    /// storage, not the tensor, so whatever is attached to the source tensor (the engine's packed copies) dies with the
    /// model that owns it.
    /// </summary>
    public static Tensor Create(Tensor source, double[] channelScale, Func<float[]> compute)
        => Tensor.Deferred([.. source.Shape], new PendingFold(source.RawFloat32, channelScale, compute));
}
