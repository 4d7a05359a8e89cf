using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>Sequential</c>: runs its children in order, each on the previous one's output.</summary>
public sealed class Sequential : Module
{
    private Sequential(ModuleParts parts) : base(parts) => RequireStateNames(parts, TypeName);

    /// <inheritdoc />
    public override string TypeName => "Sequential";

    /// <summary>A Sequential whose children are named <c>"0"</c>, <c>"1"</c>, ...</summary>
    public static Sequential Create(params Module[] modules) => Create(ModuleChildren.Numbered(modules));

    /// <summary>A Sequential with explicitly named children (PyTorch's <c>OrderedDict</c> form).</summary>
    public static Sequential Create(ModuleChildren children, bool training = false)
        => new(ModuleParts.Leaf(training) with { Children = children });

    private protected override Module Rebuild(ModuleParts parts) => new Sequential(parts);
    private protected override bool HyperparametersEqual(Module other) => other is Sequential;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];
}
