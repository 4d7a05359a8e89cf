namespace Fusion.Dsl.Rules;

/// <summary>
/// A named precondition of a <see cref="GraphRule"/>, checked after the pattern matched and the rewriter's own safety checks
/// held. A site where it fails is left as it is; <see cref="GraphRewriter.Candidates"/> reports it with the guard's name,
/// kind, problem and <see cref="Remedy"/>.
/// </summary>
public sealed class GraphGuard
{
    private readonly Func<GraphMatch, string?> _check;

    private GraphGuard(string name, FusionErrorKind kind, Func<GraphMatch, string?> check, string remedy)
    {
        Name = name; Kind = kind; _check = check; Remedy = remedy;
    }

    /// <summary>The guard's name (<c>per-channel</c>, ...).</summary>
    public string Name { get; }

    /// <summary>The kind of refusal reported when the guard fails.</summary>
    public FusionErrorKind Kind { get; }

    /// <summary>What the caller can do when the guard fails.</summary>
    public string Remedy { get; }

    /// <summary>Creates a guard.</summary>
    /// <param name="name">Name reported on failure.</param>
    /// <param name="kind">Kind reported on failure.</param>
    /// <param name="check">Null when the guard holds, otherwise a sentence saying what is wrong. Must be pure.</param>
    /// <param name="remedy">What to do when it fails.</param>
    /// <exception cref="ArgumentException">The name or remedy is empty.</exception>
    public static GraphGuard Create(string name, FusionErrorKind kind, Func<GraphMatch, string?> check, string remedy)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a graph guard needs a name");
        ArgumentNullException.ThrowIfNull(check);
        if (string.IsNullOrWhiteSpace(remedy)) throw new ArgumentException($"graph guard '{name}' needs a remedy to report when it fails");
        return new GraphGuard(name, kind, check, remedy);
    }

    /// <summary>Null when the guard holds for <paramref name="match"/>, otherwise what is wrong.</summary>
    public string? Violation(GraphMatch match) => _check(match ?? throw new ArgumentNullException(nameof(match)));

    /// <inheritdoc />
    public override string ToString() => Name;
}
