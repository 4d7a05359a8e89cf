using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Rules;

/// <summary>
/// A group of modules matched by a rule, as a guard sees it: where the modules are (<see cref="Paths"/>), what they are
/// (<see cref="Modules"/>, hooks already detached) and which form of fusion was asked for (<see cref="IsQat"/>).
/// </summary>
/// <param name="GroupIndex">Index of the group in <c>modules_to_fuse</c>.</param>
/// <param name="Paths">The group's dotted names.</param>
/// <param name="Modules">The modules at those names, in group order.</param>
/// <param name="IsQat">True for <c>fuse_modules_qat</c>, false for <c>fuse_modules</c>.</param>
public sealed record FusionMatch(int GroupIndex, IReadOnlyList<string> Paths, IReadOnlyList<Module> Modules, bool IsQat)
{
    /// <summary>Names the module at <paramref name="position"/> for messages: <c>'bn1' (BatchNorm2d)</c>.</summary>
    public string Describe(int position) => $"'{Paths[position]}' ({Modules[position].TypeName})";

    /// <summary>The module at <paramref name="position"/> as a <typeparamref name="T"/>.</summary>
    /// <exception cref="InvalidOperationException">It is another kind: the rule using the guard is defined wrongly.</exception>
    public T At<T>(int position, string guard) where T : Module
        => position < Modules.Count && Modules[position] is T t
            ? t
            : throw new InvalidOperationException(
                $"guard '{guard}' expects a {typeof(T).Name} at position {position} of the group, but the group is " +
                $"({string.Join(", ", Modules.Select(m => m.TypeName))}); the rule that uses this guard is defined wrongly");
}

/// <summary>
/// A named precondition of a <see cref="FusionRule"/>, checked when the rule is applied. When it does not hold the fusion is
/// refused with a <see cref="FusionException"/> of kind <see cref="Kind"/> that names the guard, the problem and <see cref="Remedy"/>.
/// </summary>
public sealed class FusionGuard
{
    private readonly Func<FusionMatch, string?> _check;

    private FusionGuard(string name, FusionErrorKind kind, Func<FusionMatch, string?> check, string remedy)
    {
        Name = name; Kind = kind; _check = check; Remedy = remedy;
    }

    /// <summary>The guard's name, reported when it fails (<c>eval-mode</c>, <c>running-stats</c>, ...).</summary>
    public string Name { get; }

    /// <summary>The error kind reported when the guard fails.</summary>
    public FusionErrorKind Kind { get; }

    /// <summary>What the caller can do when the guard fails.</summary>
    public string Remedy { get; }

    /// <summary>Creates a guard.</summary>
    /// <param name="name">Name reported on failure.</param>
    /// <param name="kind">Error kind reported on failure.</param>
    /// <param name="check">Returns null when the guard holds, otherwise a sentence saying what is wrong (naming paths via
    /// <see cref="FusionMatch.Describe"/>). Must be pure.</param>
    /// <param name="remedy">What to do when it fails.</param>
    /// <exception cref="ArgumentException">The name or remedy is empty.</exception>
    public static FusionGuard Create(string name, FusionErrorKind kind, Func<FusionMatch, string?> check, string remedy)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("a fusion guard needs a name");
        ArgumentNullException.ThrowIfNull(check);
        if (string.IsNullOrWhiteSpace(remedy)) throw new ArgumentException($"fusion guard '{name}' needs a remedy to report when it fails");
        return new FusionGuard(name, kind, check, remedy);
    }

    /// <summary>Null when the guard holds for <paramref name="match"/>, otherwise what is wrong.</summary>
    public string? Violation(FusionMatch match) => _check(match);

    /// <inheritdoc />
    public override string ToString() => Name;
}
