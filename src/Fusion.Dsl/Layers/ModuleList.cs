using System.Globalization;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's <c>ModuleList</c>: a container that only holds its children, named <c>"0"</c>, <c>"1"</c>, ... in order.
/// It has no forward of its own (PyTorch's raises); an ancestor's graph calls its children by path
/// (<c>layers.0.conv</c>), as torch.fx traces a loop over it or an index into it.
/// </summary>
public sealed class ModuleList : Module
{
    private ModuleList(ModuleParts parts) : base(parts)
    {
        RequireStateNames(parts, TypeName);
        for (var i = 0; i < parts.Children.Count; i++)
            if (parts.Children[i].Name != i.ToString(CultureInfo.InvariantCulture))
                throw new ArgumentException($"ModuleList children are named 0, 1, 2, ... in order (PyTorch indexes them), got '{parts.Children[i].Name}' at position {i}");
    }

    /// <inheritdoc />
    public override string TypeName => "ModuleList";

    /// <summary>A ModuleList holding <paramref name="modules"/> under the names <c>"0"</c>, <c>"1"</c>, ...</summary>
    public static ModuleList Create(params Module[] modules) => Create(ModuleChildren.Numbered(modules));

    /// <summary>A ModuleList with the given children, which must be named <c>"0"</c>, <c>"1"</c>, ... in order.</summary>
    /// <exception cref="ArgumentException">A child is not named by its position.</exception>
    public static ModuleList Create(ModuleChildren children, bool training = false)
        => new(ModuleParts.Leaf(training) with { Children = children });

    private protected override Module Rebuild(ModuleParts parts) => new ModuleList(parts);
    private protected override bool HyperparametersEqual(Module other) => other is ModuleList;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];
}
