namespace Fusion.Dsl.Rules;

/// <summary>A site where a graph rule's pattern matches the model as it is, with the first check that refuses it (or none).</summary>
/// <param name="Site">Where, and which rule.</param>
/// <param name="Kind">The refusal's kind, or null when the rule would apply.</param>
/// <param name="Check">The refusing check: one of the rewriter's (<c>readers</c>, <c>hooks</c>, <c>called-once</c>,
/// <c>state-read</c>, <c>in-place-between</c>) or a guard of the rule; null when the rule would apply.</param>
/// <param name="Problem">What is wrong, or null.</param>
public sealed record GraphCandidate(GraphFusion Site, FusionErrorKind? Kind, string? Check, string? Problem)
{
    /// <summary>Whether the rule applies here.</summary>
    public bool Applies => Kind is null;
}
