using System.Collections.Immutable;

namespace Fusion.Dsl.Rules;

/// <summary>
/// What replaces a <see cref="GraphRule"/>'s matched nodes: a call of the rewritten module with some of the match's inputs
/// (<see cref="Call"/>), or the rewritten module's own node, unchanged, whose value the readers of the root now read
/// (<see cref="Reuse"/>).
/// </summary>
public sealed class GraphResult
{
    private GraphResult(ImmutableArray<string>? arguments) => Arguments = arguments;

    /// <summary>The input and constant parts passed, in order, to the rewritten module called where the root was; null for
    /// <see cref="Reuse"/>.</summary>
    public ImmutableArray<string>? Arguments { get; }

    /// <summary>Whether the result is a new call placed where the root node was (the matched modules then run later than
    /// before, so the rewriter refuses a site with an in-place operation in between).</summary>
    public bool IsCall => Arguments is not null;

    /// <summary>The rewritten module, called where the root was, with the values bound to <paramref name="arguments"/>.</summary>
    /// <exception cref="ArgumentException">No argument, or a blank one.</exception>
    public static GraphResult Call(params string[] arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        if (arguments.Length == 0 || arguments.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("a graph rule's call needs named arguments");
        return new GraphResult([.. arguments]);
    }

    /// <summary>The rewritten module's node is kept where it is and the root's readers read it instead.</summary>
    public static GraphResult Reuse { get; } = new(null);

    /// <inheritdoc />
    public override string ToString() => Arguments is { } a ? $"call({string.Join(", ", a)})" : "reuse";
}
