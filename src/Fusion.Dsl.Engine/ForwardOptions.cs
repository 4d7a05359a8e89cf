namespace Fusion.Dsl.Engine;

/// <summary>How <see cref="Forward.Run(Algebra.Module, Tensors.Tensor, ForwardOptions?)"/> evaluates a model.</summary>
public sealed record ForwardOptions
{
    /// <summary>The default options: every core of the machine.</summary>
    public static ForwardOptions Default { get; } = new();

    /// <summary>
    /// The most cores a single forward pass uses; null means <see cref="Environment.ProcessorCount"/>.
    /// One runs every kernel on the calling thread. The result does not depend on it: every output element is
    /// computed by one thread in a fixed order, so any thread count gives the same bits.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>The thread count to use, validated.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="Threads"/> is zero or negative.</exception>
    internal int ResolvedThreads => ResolveThreads(Threads, nameof(ForwardOptions));

    /// <summary><paramref name="threads"/>, or every core when it is null; <paramref name="owner"/> names the options type in the error.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is zero or negative.</exception>
    internal static int ResolveThreads(int? threads, string owner) => threads switch
    {
        null => Environment.ProcessorCount,
        > 0 and var t => t,
        var t => throw new ArgumentOutOfRangeException(nameof(Threads), t, $"{owner}.Threads must be positive (or null for every core)"),
    };
}
