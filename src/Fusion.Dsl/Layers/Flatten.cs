using Fusion.Dsl.Algebra;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>Flatten(start_dim=1, end_dim=-1)</c>.</summary>
public sealed class Flatten : Module
{
    private Flatten(ModuleParts parts, int startDim, int endDim) : base(parts)
    {
        StartDim = startDim; EndDim = endDim;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
    }

    /// <summary><c>start_dim</c>.</summary>
    public int StartDim { get; }
    /// <summary><c>end_dim</c> (negative counts from the end).</summary>
    public int EndDim { get; }
    /// <inheritdoc />
    public override string TypeName => "Flatten";

    /// <summary>The kind <c>Flatten</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("Flatten", typeof(Flatten),
        [Opt("start_dim", K.Int, 1), Opt("end_dim", K.Int, -1)], [],
        a => Create(a.Int("start_dim"), a.Int("end_dim"), a.Training), (m, x) => OutputShape((Flatten)m, x), new Dictionary<string, object?>(), [2, 3, 2, 2]);

    /// <summary>Creates a Flatten module.</summary>
    public static Flatten Create(int startDim = 1, int endDim = -1, bool training = false) => new(ModuleParts.Leaf(training), startDim, endDim);

    private protected override Module Rebuild(ModuleParts parts) => new Flatten(parts, StartDim, EndDim);
    private protected override bool HyperparametersEqual(Module other) => other is Flatten f && f.StartDim == StartDim && f.EndDim == EndDim;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("start_dim", StartDim), new("end_dim", EndDim)];
    // The axes start_dim..end_dim (negative from the end) as one.
    private static int[] OutputShape(Flatten f, int[] x)
    {
        int start = f.StartDim < 0 ? f.StartDim + x.Length : f.StartDim, end = f.EndDim < 0 ? f.EndDim + x.Length : f.EndDim;
        return [.. x[..start], checked(x[start..(end + 1)].Aggregate(1, (p, q) => p * q)), .. x[(end + 1)..]];
    }

    /// <inheritdoc />
    public override string ExtraRepr => $"start_dim={StartDim}, end_dim={EndDim}";
}
