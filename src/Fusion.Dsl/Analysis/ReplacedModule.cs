namespace Fusion.Dsl.Analysis;

/// <summary>
/// One place fusion rewrote (see <see cref="ModelDiff"/>): the module at <paramref name="Path"/> changed kind or weights, and the
/// modules at <paramref name="IdentityPaths"/> became <c>Identity</c> with it (the rest of its group).
/// </summary>
/// <param name="Path">Dotted path of the module that holds the group's result.</param>
/// <param name="BeforeType">Its type name before (<c>Conv2d</c>).</param>
/// <param name="AfterType">Its type name after (<c>ConvReLU2d</c>, or <c>Conv2d</c> again when BatchNorm was folded into it).</param>
/// <param name="IdentityPaths">The modules turned into <c>Identity</c> that follow it, with their type names before.</param>
public sealed record ReplacedModule(string Path, string BeforeType, string AfterType, IReadOnlyList<KeyValuePair<string, string>> IdentityPaths)
{
    /// <summary><c>conv1: Conv2d -> ConvReLU2d (bn1: BatchNorm2d, relu1: ReLU -> Identity)</c>.</summary>
    public override string ToString()
        => $"{Path}: {BeforeType} -> {AfterType}" +
           (IdentityPaths.Count == 0 ? "" : $" ({string.Join(", ", IdentityPaths.Select(p => $"{p.Key}: {p.Value}"))} -> Identity)");
}
