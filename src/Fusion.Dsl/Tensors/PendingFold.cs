namespace Fusion.Dsl.Tensors;

/// <summary>The recipe of a folded weight not computed yet: <see cref="Source"/> scaled per output channel by
/// <see cref="ChannelScale"/> (float64, rounded to float32 once per element), and the function computing it.</summary>
internal sealed class PendingFold(float[] source, double[] channelScale, Func<float[]> compute)
{
    /// <summary>The elements of the weight before folding (its storage, shared, never written).</summary>
    public float[] Source { get; } = source;

    /// <summary>One factor per output channel of the layer.</summary>
    public double[] ChannelScale { get; } = channelScale;

    /// <summary>One folded element: the float64 product rounded to float32 once, the fold's only rounding. Everything that
    /// computes folded values (the fold itself, the engine packing from a recipe) goes through this formula.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static float Element(float weight, double scale) => (float)(weight * scale);

    /// <summary>Computes the folded elements (pure; a new array).</summary>
    public Func<float[]> Compute { get; } = compute;
}
