using Fusion.Dsl.Algebra;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>Dropout</c>. The engine evaluates it as the identity in eval mode and refuses to run it in
/// training mode, where PyTorch's output is random.</summary>
public sealed class Dropout : Module
{
    private Dropout(ModuleParts parts, double p, bool inplace) : base(parts)
    {
        P = p; Inplace = inplace;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        if (p is < 0 or > 1) throw new ArgumentException($"Dropout: p must be in [0, 1], got {p}");
    }

    /// <summary>The drop probability <c>p</c>.</summary>
    public double P { get; }
    /// <summary>PyTorch's <c>inplace</c> flag.</summary>
    public bool Inplace { get; }
    /// <inheritdoc />
    public override string TypeName => "Dropout";

    /// <summary>The kind <c>Dropout</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("Dropout", typeof(Dropout),
        [Opt("p", K.Double, 0.5), Opt("inplace", K.Bool, false)], [],
        a => Create(a.Double("p"), a.Bool("inplace"), a.Training), LayerDescriptor.SameShape, new Dictionary<string, object?>(), [2, 3],
        note: "the identity in eval mode",
        notImported: "an inference graph has no dropout (the exporter writes the identity), and an ONNX Dropout node is read as an alias of its input");

    /// <summary>Creates a Dropout module.</summary>
    /// <exception cref="ArgumentException"><paramref name="p"/> is outside [0, 1].</exception>
    public static Dropout Create(double p = 0.5, bool inplace = false, bool training = false) => new(ModuleParts.Leaf(training), p, inplace);

    private protected override Module Rebuild(ModuleParts parts) => new Dropout(parts, P, Inplace);
    private protected override bool HyperparametersEqual(Module other) => other is Dropout d && d.P.Equals(P) && d.Inplace == Inplace;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("p", P), new("inplace", Inplace)];
    /// <inheritdoc />
    public override string ExtraRepr => $"p={ModuleRepr.Float(P)}, inplace={ModuleRepr.Bool(Inplace)}";
}
