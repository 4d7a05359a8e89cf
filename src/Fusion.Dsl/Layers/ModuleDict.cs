using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's <c>ModuleDict</c>: a container that only holds its children under their keys, in insertion order. It has
/// no forward of its own; an ancestor's graph calls its children by path (<c>heads.cls</c>), as torch.fx traces
/// <c>self.heads["cls"](x)</c> or a loop over <c>self.heads.values()</c>.
/// </summary>
public sealed class ModuleDict : Module
{
    private ModuleDict(ModuleParts parts) : base(parts) => RequireStateNames(parts, TypeName);

    /// <inheritdoc />
    public override string TypeName => "ModuleDict";

    /// <summary>A ModuleDict with the given children (key order is kept, as PyTorch's is).</summary>
    public static ModuleDict Create(ModuleChildren children, bool training = false)
        => new(ModuleParts.Leaf(training) with { Children = children });

    private protected override Module Rebuild(ModuleParts parts) => new ModuleDict(parts);
    private protected override bool HyperparametersEqual(Module other) => other is ModuleDict;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];
}
