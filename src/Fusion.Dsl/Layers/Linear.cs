using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>Linear</c>: <c>y = x Wᵀ + b</c> over the last dimension; weight <c>[out, in]</c>, bias <c>[out]</c>.</summary>
public sealed class Linear : Module
{
    private Linear(ModuleParts parts, int inFeatures, int outFeatures, bool hasBias) : base(parts)
    {
        InFeatures = inFeatures; OutFeatures = outFeatures; HasBias = hasBias;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName, "weight", "bias");
        Limits.RequireArgument("Linear", "in_features", inFeatures, 0);
        Limits.RequireArgument("Linear", "out_features", outFeatures, 1);
        RequireShape(State.TryGet("weight"), TypeName, "weight", outFeatures, inFeatures);
        if (hasBias) RequireShape(State.TryGet("bias"), TypeName, "bias", outFeatures);
        else if (State.TryGet("bias") is not null) throw new ArgumentException("Linear: bias=False but a bias tensor was given");
    }

    /// <summary><c>in_features</c>.</summary>
    public int InFeatures { get; }
    /// <summary><c>out_features</c>.</summary>
    public int OutFeatures { get; }
    /// <summary><c>bias</c>: whether a bias parameter exists.</summary>
    public bool HasBias { get; }
    /// <summary>The weight <c>[out, in]</c>.</summary>
    public Tensor Weight => State["weight"];
    /// <summary>The bias <c>[out]</c>, or null.</summary>
    public Tensor? Bias => State.TryGet("bias");

    /// <inheritdoc />
    public override string TypeName => "Linear";

    /// <summary>The kind <c>Linear</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("Linear", typeof(Linear),
        [Need("in_features", K.Int), Need("out_features", K.Int), Opt("bias", K.Bool, true)],
        ["weight", "bias"],
        a => Create(a.Int("in_features"), a.Int("out_features"), a.Bool("bias"), a.State.TryGet("weight"), a.State.TryGet("bias"), a.Training, a.Seed),
        (m, x) => [.. x[..^1], ((Linear)m).OutFeatures],
        new Dictionary<string, object?> { ["in_features"] = 4, ["out_features"] = 3 },
        [2, 4],
        neededState: a => a.Bool("bias") ? ["weight", "bias"] : ["weight"],
        seeded: true);

    /// <summary>Creates a Linear layer; missing tensors are drawn with PyTorch's default initialisation from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">A tensor has the wrong shape.</exception>
    public static Linear Create(int inFeatures, int outFeatures, bool bias = true, Tensor? weight = null, Tensor? biasTensor = null,
        bool training = false, int seed = 0)
    {
        if (weight is null || (bias && biasTensor is null))
        {
            var rng = new Random(seed);
            var bound = inFeatures > 0 ? 1.0 / Math.Sqrt(inFeatures) : 0;
            weight ??= Init.Uniform(rng, bound, outFeatures, inFeatures);
            if (bias) biasTensor ??= Init.Uniform(rng, bound, outFeatures);
        }
        return new Linear(ModuleParts.Leaf(training, TensorDict.Create(("weight", weight), ("bias", bias ? biasTensor : null))), inFeatures, outFeatures, bias);
    }

    /// <summary>This layer with another weight and bias (a null bias removes it).</summary>
    public Linear WithParameters(Tensor weight, Tensor? bias)
    {
        if (ReferenceEquals(weight, Weight) && ReferenceEquals(bias, Bias)) return this;
        return new Linear(Parts with { State = TensorDict.Create(("weight", weight), ("bias", bias)) }, InFeatures, OutFeatures, bias is not null);
    }

    private protected override Module Rebuild(ModuleParts parts) => new Linear(parts, InFeatures, OutFeatures, HasBias);

    private protected override bool HyperparametersEqual(Module other)
        => other is Linear l && l.InFeatures == InFeatures && l.OutFeatures == OutFeatures && l.HasBias == HasBias;

    /// <inheritdoc />
    public override string ExtraRepr => $"in_features={InFeatures}, out_features={OutFeatures}, bias={ModuleRepr.Bool(HasBias)}";

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments =>
        [new("in_features", InFeatures), new("out_features", OutFeatures), new("bias", HasBias)];
}
