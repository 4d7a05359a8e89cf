using Fusion.Dsl.Algebra;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>Identity</c>: returns its input. Fusion leaves one at every position of a group but the first.</summary>
public sealed class Identity : Module
{
    private Identity(ModuleParts parts) : base(parts)
    {
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
    }

    /// <inheritdoc />
    public override string TypeName => "Identity";

    /// <summary>The kind <c>Identity</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } =
        new("Identity", typeof(Identity), [], [], a => Create(a.Training), LayerDescriptor.SameShape, new Dictionary<string, object?>(), [2, 3],
            notImported: "the exporter writes no node for it, and an ONNX Identity node is read as an alias of its input, not a module");

    /// <summary>An Identity with the given training flag.</summary>
    public static Identity Create(bool training = false) => training ? TrainingInstance : EvalInstance;

    private static readonly Identity EvalInstance = new(ModuleParts.Leaf(false));
    private static readonly Identity TrainingInstance = new(ModuleParts.Leaf(true));

    private protected override Module Rebuild(ModuleParts parts) => new Identity(parts);
    private protected override bool HyperparametersEqual(Module other) => other is Identity;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];
}
