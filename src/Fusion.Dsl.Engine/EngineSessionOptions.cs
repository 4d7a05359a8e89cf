namespace Fusion.Dsl.Engine;

/// <summary>The budgets of an <see cref="EngineSession"/>: cores per pass and bytes of pooled intermediate buffers.</summary>
public sealed record EngineSessionOptions
{
    /// <summary>The default options: every core, and up to 256 MiB of pooled buffers.</summary>
    public static EngineSessionOptions Default { get; } = new();

    /// <summary>
    /// The most cores one forward pass of the session uses; null means <see cref="Environment.ProcessorCount"/>. One runs
    /// every kernel on the calling thread. The result does not depend on it (every output element is computed by one
    /// thread in a fixed order).
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>
    /// The most bytes of intermediate buffers the session keeps for reuse by later layers and passes; null means 256 MiB,
    /// 0 keeps none (every output is a fresh array). The buffers a running pass holds are its working set and are not
    /// counted: the limit bounds what the session keeps besides them. Results do not depend on it.
    /// </summary>
    public long? MaxPooledBufferBytes { get; init; }

    /// <summary>The thread count to use, validated.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="Threads"/> is zero or negative.</exception>
    internal int ResolvedThreads => ForwardOptions.ResolveThreads(Threads, nameof(EngineSessionOptions));

    /// <summary>The pool limit to use, validated.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="MaxPooledBufferBytes"/> is negative.</exception>
    internal long ResolvedMaxPooledBufferBytes => MaxPooledBufferBytes switch
    {
        null => BufferPool.DefaultMaxBytes,
        >= 0 and var b => b,
        var b => throw new ArgumentOutOfRangeException(nameof(MaxPooledBufferBytes), b,
            "EngineSessionOptions.MaxPooledBufferBytes must be zero or positive (or null for 256 MiB)"),
    };
}
