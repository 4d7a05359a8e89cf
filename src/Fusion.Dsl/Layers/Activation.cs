using Fusion.Dsl.Algebra;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>The element-wise activations this project knows.</summary>
public enum ActivationKind
{
    /// <summary><c>ReLU</c>: max(x, 0).</summary>
    ReLU,
    /// <summary><c>ReLU6</c>: min(max(x, 0), 6).</summary>
    ReLU6,
    /// <summary><c>Hardswish</c>: x · relu6(x + 3) / 6.</summary>
    Hardswish,
    /// <summary><c>Hardsigmoid</c>: relu6(x + 3) / 6.</summary>
    Hardsigmoid,
    /// <summary><c>SiLU</c>: x · sigmoid(x).</summary>
    SiLU,
}

/// <summary>PyTorch's stateless element-wise activation modules (<c>ReLU</c>, <c>ReLU6</c>, <c>Hardswish</c>, <c>Hardsigmoid</c>, <c>SiLU</c>).
/// <c>inplace</c> is recorded for fidelity but has no effect on immutable tensors.</summary>
public sealed class Activation : Module
{
    private Activation(ModuleParts parts, ActivationKind kind, bool inplace) : base(parts)
    {
        Kind = kind; Inplace = inplace;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
    }

    /// <summary>Which activation.</summary>
    public ActivationKind Kind { get; }
    /// <summary>PyTorch's <c>inplace</c> flag (kept for round trips; results are never written in place).</summary>
    public bool Inplace { get; }

    /// <inheritdoc />
    public override string TypeName => Kind.ToString();

    /// <summary>One kind per <see cref="ActivationKind"/>, each taking <c>inplace</c>.</summary>
    internal static IEnumerable<LayerDescriptor> Descriptors =>
        from kind in Enum.GetValues<ActivationKind>()
        select new LayerDescriptor(kind.ToString(), typeof(Activation), [Opt("inplace", K.Bool, false)], [],
            a => Create(kind, a.Bool("inplace"), a.Training), LayerDescriptor.SameShape, new Dictionary<string, object?>(), [2, 3, 4, 4]);

    /// <summary>Creates an activation module.</summary>
    public static Activation Create(ActivationKind kind, bool inplace = false, bool training = false)
        => new(ModuleParts.Leaf(training), kind, inplace);

    private protected override Module Rebuild(ModuleParts parts) => new Activation(parts, Kind, Inplace);
    private protected override bool HyperparametersEqual(Module other) => other is Activation a && a.Kind == Kind && a.Inplace == Inplace;

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("inplace", Inplace)];

    // Hardswish and Hardsigmoid have no extra_repr in torch 1.13, so their inplace flag never shows.
    /// <inheritdoc />
    public override string ExtraRepr => Inplace && Kind is not (ActivationKind.Hardswish or ActivationKind.Hardsigmoid) ? "inplace=True" : "";
}
