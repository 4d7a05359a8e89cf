using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's <c>GLU(dim=-1)</c>, the gated linear unit: the input halved along <c>dim</c> into <c>a</c> and <c>b</c>, then
/// <c>a * sigmoid(b)</c>. Its descriptor states that definition in table operations, so the engine and the ONNX exporter
/// take it from there (docs/adding-a-layer.md uses it as the worked example of a kind with no code of its own elsewhere).
/// </summary>
public sealed class GLU : Module
{
    private GLU(ModuleParts parts, int dim) : base(parts)
    {
        Dim = dim;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
    }

    /// <summary><c>dim</c>: the axis that is halved (negative counts from the end).</summary>
    public int Dim { get; }

    /// <inheritdoc />
    public override string TypeName => "GLU";

    /// <summary>The kind <c>GLU</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("GLU", typeof(GLU),
        [Opt("dim", K.Int, -1)], [],
        a => Create(a.Int("dim"), a.Training), (m, x) => OutputShape((GLU)m, x), new Dictionary<string, object?>(), [2, 3, 4],
        definition: m => Definition((GLU)m),
        notImported: "ONNX has no GLU operator: the export is the definition's Split, Sigmoid and Mul, which read back as those operations");

    /// <summary>Creates a GLU module.</summary>
    public static GLU Create(int dim = -1, bool training = false) => new(ModuleParts.Leaf(training), dim);

    /// <summary><c>F.glu(input, dim)</c>: <c>a, b = input.chunk(2, dim)</c>, then <c>a * sigmoid(b)</c>.</summary>
    private static Graph Definition(GLU m)
    {
        var g = new GraphBuilder();
        var input = g.Input("input");
        var halves = g.Method("chunk", input, 2L, (long)m.Dim);
        var a = g.Function("getitem", halves, 0L);
        var b = g.Function("getitem", halves, 1L);
        return g.Output(g.Function("mul", a, g.Function("sigmoid", b)));
    }

    // The halved axis; PyTorch's messages for what it refuses:  an odd size (chunk alone would give unequal halves) and an axis outside the input.
    private static int[] OutputShape(GLU m, int[] x)
    {
        if (x.Length == 0) throw new ArgumentException("glu does not support scalars because halving size must be even");
        var d = Dimensions.Wrap(m.Dim, x.Length)
                ?? throw new ArgumentException($"Dimension out of range (expected to be in range of [{-x.Length}, {x.Length - 1}], but got {m.Dim})");
        if (x[d] % 2 != 0) throw new ArgumentException($"Halving dimension must be even, but dimension {d} is size {x[d]}");
        var y = (int[])x.Clone();
        y[d] /= 2;
        return y;
    }

    private protected override Module Rebuild(ModuleParts parts) => new GLU(parts, Dim);
    private protected override bool HyperparametersEqual(Module other) => other is GLU g && g.Dim == Dim;

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("dim", Dim)];

    /// <inheritdoc />
    public override string ExtraRepr => $"dim={Dim}";
}
