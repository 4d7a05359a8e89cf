using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's <c>Conv1d/2d/3d</c> and <c>ConvTranspose1d/2d/3d</c> as one N-dimensional family
/// (<see cref="Rank"/> spatial dimensions, <see cref="Transposed"/>). The weight is
/// <c>[out, in/groups, *kernel]</c>, or <c>[in, out/groups, *kernel]</c> when transposed; the bias is <c>[out]</c>.
/// </summary>
public sealed class Conv : Module
{
    private Conv(ModuleParts parts, int rank, bool transposed, int inChannels, int outChannels, ImmutableArray<int> kernelSize,
        ImmutableArray<int> stride, ConvPadding padding, ImmutableArray<int> dilation, int groups, bool hasBias,
        PaddingMode paddingMode, ImmutableArray<int> outputPadding) : base(parts)
    {
        Rank = rank; Transposed = transposed; InChannels = inChannels; OutChannels = outChannels; KernelSize = kernelSize;
        Stride = stride; Padding = padding; Dilation = dilation; Groups = groups; HasBias = hasBias; PaddingMode = paddingMode;
        OutputPadding = outputPadding;
        Validate();
    }

    /// <summary>Number of spatial dimensions: 1, 2 or 3.</summary>
    public int Rank { get; }
    /// <summary>True for <c>ConvTranspose*d</c>.</summary>
    public bool Transposed { get; }
    /// <summary><c>in_channels</c>.</summary>
    public int InChannels { get; }
    /// <summary><c>out_channels</c>.</summary>
    public int OutChannels { get; }
    /// <summary><c>kernel_size</c>, one entry per spatial dimension.</summary>
    public ImmutableArray<int> KernelSize { get; }
    /// <summary><c>stride</c>.</summary>
    public ImmutableArray<int> Stride { get; }
    /// <summary><c>padding</c>: amounts, <c>same</c> or <c>valid</c>.</summary>
    public ConvPadding Padding { get; }
    /// <summary><c>dilation</c>.</summary>
    public ImmutableArray<int> Dilation { get; }
    /// <summary><c>groups</c>.</summary>
    public int Groups { get; }
    /// <summary><c>bias</c>: whether the module has a bias parameter.</summary>
    public bool HasBias { get; }
    /// <summary><c>padding_mode</c>.</summary>
    public PaddingMode PaddingMode { get; }
    /// <summary><c>output_padding</c> (transposed only; zeros otherwise).</summary>
    public ImmutableArray<int> OutputPadding { get; }

    /// <summary>The weight tensor.</summary>
    public Tensor Weight => State["weight"];
    /// <summary>The bias tensor, or null when <see cref="HasBias"/> is false.</summary>
    public Tensor? Bias => State.TryGet("bias");

    /// <inheritdoc />
    public override string TypeName => Names[Transposed ? 1 : 0][Rank - 1];

    // Built once: rules and codecs ask for the name of every convolution they meet.
    private static readonly string[][] Names = [["Conv1d", "Conv2d", "Conv3d"], ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]];

    /// <summary>The six kinds <c>Conv1d/2d/3d</c> and <c>ConvTranspose1d/2d/3d</c>, arguments in the order <see cref="Arguments"/> lists
    /// them (the order PyTorch's fixtures write; a transposed convolution's constructor takes them in another).</summary>
    internal static IEnumerable<LayerDescriptor> Descriptors =>
        from transposed in new[] { false, true }
        from rank in new[] { 1, 2, 3 }
        select new LayerDescriptor((transposed ? "ConvTranspose" : "Conv") + rank + "d", typeof(Conv),
            [
                Need("in_channels", K.Int), Need("out_channels", K.Int), Need("kernel_size", K.Size), Opt("stride", K.Size, new[] { 1 }),
                // A transposed convolution's padding is amounts only (PyTorch has no "same" for it).
                transposed ? Opt("padding", K.Size, new[] { 0 }) : Opt("padding", K.ConvPadding, ConvPadding.Explicit(0)),
                Opt("dilation", K.Size, new[] { 1 }), Opt("groups", K.Int, 1),
                Opt("bias", K.Bool, true), Opt("padding_mode", K.PaddingMode, PaddingMode.Zeros),
                .. transposed ? new[] { Opt("output_padding", K.Size, new[] { 0 }) } : [],
            ],
            ["weight", "bias"],
            a => Create(rank, a.Int("in_channels"), a.Int("out_channels"), a.Size("kernel_size"), a.Size("stride"),
                transposed ? ConvPadding.Explicit(a.Size("padding")) : a.Padding("padding"),
                a.Size("dilation"), a.Int("groups"), a.Bool("bias"), a.PaddingMode("padding_mode"), transposed,
                transposed ? a.Size("output_padding") : null, a.State.TryGet("weight"), a.State.TryGet("bias"), a.Training, a.Seed),
            (m, x) => OutputShape((Conv)m, x),
            transposed
                ? new Dictionary<string, object?> { ["in_channels"] = 2, ["out_channels"] = 3, ["kernel_size"] = 3, ["stride"] = 2 }
                : new Dictionary<string, object?> { ["in_channels"] = 2, ["out_channels"] = 3, ["kernel_size"] = 3, ["padding"] = 1 },
            [1, 2, .. Enumerable.Repeat(5 - rank / 3, rank)],
            neededState: a => a.Bool("bias") ? ["weight", "bias"] : ["weight"],
            seeded: true,
            seedAfter: transposed ? "dilation" : null,
            constructorOrder: transposed
                ? ["in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation", "padding_mode"]
                : null,
            note: transposed ? null : "a padding also takes \"same\" or \"valid\"");

    /// <summary>Shape PyTorch gives the weight for these hyperparameters.</summary>
    public int[] WeightShape => Transposed
        ? [InChannels, OutChannels / Groups, .. KernelSize]
        : [OutChannels, InChannels / Groups, .. KernelSize];

    /// <summary>
    /// Creates a convolution. Scalars passed as one-element arrays broadcast to every spatial dimension, as PyTorch's
    /// <c>_ntuple</c> does. Missing weight and bias are drawn with PyTorch's default initialisation from <paramref name="seed"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (channels not divisible by groups, wrong tensor shape, <c>same</c> with stride, ...).</exception>
    public static Conv Create(int rank, int inChannels, int outChannels, int[] kernelSize, int[]? stride = null,
        ConvPadding? padding = null, int[]? dilation = null, int groups = 1, bool bias = true,
        PaddingMode paddingMode = PaddingMode.Zeros, bool transposed = false, int[]? outputPadding = null,
        Tensor? weight = null, Tensor? biasTensor = null, bool training = false, int seed = 0)
    {
        if (rank is < 1 or > 3) throw new ArgumentException($"convolution rank must be 1, 2 or 3, got {rank}");
        var k = Expand(kernelSize, rank, "kernel_size");
        var s = Expand(stride ?? [1], rank, "stride");
        var d = Expand(dilation ?? [1], rank, "dilation");
        var op = Expand(outputPadding ?? [0], rank, "output_padding");
        var p = padding ?? ConvPadding.Explicit(0);
        if (p.Kind == PaddingKind.Explicit) p = ConvPadding.Explicit([.. Expand([.. p.Amounts], rank, "padding")]);
        if (groups <= 0) throw new ArgumentException($"groups must be positive, got {groups}");
        if (weight is null || (bias && biasTensor is null))
        {
            var rng = new Random(seed);
            var fanIn = (transposed ? outChannels : inChannels) / Math.Max(groups, 1) * k.Aggregate(1, (a, b) => a * b);
            var bound = fanIn > 0 ? 1.0 / Math.Sqrt(fanIn) : 0;
            int[] wShape = transposed ? [inChannels, outChannels / groups, .. k] : [outChannels, inChannels / groups, .. k];
            weight ??= Init.Uniform(rng, bound, wShape);
            if (bias) biasTensor ??= Init.Uniform(rng, bound, outChannels);
        }
        var parts = ModuleParts.Leaf(training, TensorDict.Create(("weight", weight), ("bias", bias ? biasTensor : null)));
        return new Conv(parts, rank, transposed, inChannels, outChannels, k, s, p, d, groups, bias, paddingMode, op);
    }

    /// <summary>This convolution with another weight and bias (a null bias removes it); hyperparameters follow the bias.</summary>
    public Conv WithParameters(Tensor weight, Tensor? bias)
    {
        if (ReferenceEquals(weight, Weight) && ReferenceEquals(bias, Bias)) return this;
        var parts = Parts with { State = TensorDict.Create(("weight", weight), ("bias", bias)) };
        return new Conv(parts, Rank, Transposed, InChannels, OutChannels, KernelSize, Stride, Padding, Dilation, Groups,
            bias is not null, PaddingMode, OutputPadding);
    }

    private protected override Module Rebuild(ModuleParts parts)
        => new Conv(parts, Rank, Transposed, InChannels, OutChannels, KernelSize, Stride, Padding, Dilation, Groups, HasBias, PaddingMode, OutputPadding);

    private protected override bool HyperparametersEqual(Module other)
        => other is Conv c && c.Rank == Rank && c.Transposed == Transposed && c.InChannels == InChannels && c.OutChannels == OutChannels
           && c.KernelSize.SequenceEqual(KernelSize) && c.Stride.SequenceEqual(Stride) && c.Padding.Equals(Padding)
           && c.Dilation.SequenceEqual(Dilation) && c.Groups == Groups && c.HasBias == HasBias && c.PaddingMode == PaddingMode
           && c.OutputPadding.SequenceEqual(OutputPadding);

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments
    {
        get
        {
            var a = new List<KeyValuePair<string, object?>>
            {
                new("in_channels", InChannels), new("out_channels", OutChannels), new("kernel_size", KernelSize),
                new("stride", Stride), new("padding", Padding.ToArgument()), new("dilation", Dilation), new("groups", Groups),
                new("bias", HasBias), new("padding_mode", PaddingMode.ToString().ToLowerInvariant()),
            };
            if (Transposed) a.Add(new("output_padding", OutputPadding));
            return a;
        }
    }

    /// <inheritdoc />
    public override string ExtraRepr
    {
        get
        {
            // torch's _ConvNd.extra_repr: the optional parts only when they differ from their defaults.
            var s = new System.Text.StringBuilder(
                $"{InChannels}, {OutChannels}, kernel_size={ModuleRepr.Tuple(KernelSize)}, stride={ModuleRepr.Tuple(Stride)}");
            if (Padding.Kind != PaddingKind.Explicit) s.Append(", padding=").Append(Padding.Kind.ToString().ToLowerInvariant());
            else if (Padding.Amounts.Any(x => x != 0)) s.Append(", padding=").Append(ModuleRepr.Tuple(Padding.Amounts));
            if (Dilation.Any(x => x != 1)) s.Append(", dilation=").Append(ModuleRepr.Tuple(Dilation));
            if (OutputPadding.Any(x => x != 0)) s.Append(", output_padding=").Append(ModuleRepr.Tuple(OutputPadding));
            if (Groups != 1) s.Append(", groups=").Append(Groups);
            if (!HasBias) s.Append(", bias=False");
            if (PaddingMode != PaddingMode.Zeros) s.Append(", padding_mode=").Append(PaddingMode.ToString().ToLowerInvariant());
            return s.ToString();
        }
    }

    // [N, out_channels, *spatial] by the convolution's sliding-window lengths; another padding mode pads by the same amounts.
    private static int[] OutputShape(Conv c, int[] x)
    {
        var (left, right) = c.Padding.Resolve(c.KernelSize.AsSpan(), c.Dilation.AsSpan());
        var shape = new int[c.Rank + 2];
        shape[0] = x[0];
        shape[1] = c.OutChannels;
        for (var i = 0; i < c.Rank; i++)
            shape[2 + i] = checked((int)(c.Transposed
                ? SlidingWindow.ConvTransposeOutput(x[2 + i], c.KernelSize[i], c.Stride[i], left[i], right[i], c.Dilation[i], c.OutputPadding[i])
                : SlidingWindow.ConvOutput(x[2 + i], c.KernelSize[i], c.Stride[i], left[i], right[i], c.Dilation[i])));
        return shape;
    }

    private void Validate()
    {
        var t = TypeName;
        RequireNoChildren(Parts, t);
        RequireStateNames(Parts, t, "weight", "bias");
        Limits.RequireArgument(t, "in_channels", InChannels, 1);
        Limits.RequireArgument(t, "out_channels", OutChannels, 1);
        Limits.RequireArgument(t, "groups", Groups, 1);
        Limits.RequireArguments(t, "kernel_size", KernelSize, 1);
        Limits.RequireArguments(t, "stride", Stride, 1);
        Limits.RequireArguments(t, "dilation", Dilation, 1);
        Limits.RequireArguments(t, "output_padding", OutputPadding, 0);
        if (Padding.Kind == PaddingKind.Explicit) Limits.RequireArguments(t, "padding", Padding.Amounts, 0);
        if (InChannels % Groups != 0) throw new ArgumentException($"{t}: in_channels ({InChannels}) must be divisible by groups ({Groups})");
        if (OutChannels % Groups != 0) throw new ArgumentException($"{t}: out_channels ({OutChannels}) must be divisible by groups ({Groups})");
        if (KernelSize.Any(x => x <= 0) || Stride.Any(x => x <= 0) || Dilation.Any(x => x <= 0))
            throw new ArgumentException($"{t}: kernel_size, stride and dilation must be positive");
        if (Padding.Kind == PaddingKind.Explicit && Padding.Amounts.Length != Rank)
            throw new ArgumentException($"{t}: padding needs {Rank} entries, got {Padding.Amounts.Length}");
        if (Padding.Kind == PaddingKind.Same && Stride.Any(x => x != 1))
            throw new ArgumentException($"{t}: padding='same' is not supported for strided convolutions");
        if (Transposed)
        {
            if (PaddingMode != PaddingMode.Zeros) throw new ArgumentException($"{t}: only padding_mode 'zeros' is supported");
            if (Padding.Kind != PaddingKind.Explicit) throw new ArgumentException($"{t}: padding must be explicit amounts");
            for (var i = 0; i < Rank; i++)
                if (OutputPadding[i] >= Math.Max(Stride[i], Dilation[i]))
                    throw new ArgumentException($"{t}: output_padding ({OutputPadding[i]}) must be smaller than either stride or dilation");
        }
        else if (OutputPadding.Any(x => x != 0)) throw new ArgumentException($"{t}: output_padding applies to transposed convolutions only");
        RequireShape(State.TryGet("weight"), t, "weight", WeightShape);
        if (HasBias) RequireShape(State.TryGet("bias"), t, "bias", OutChannels);
        else if (State.TryGet("bias") is not null) throw new ArgumentException($"{t}: bias=False but a bias tensor was given");
    }

    private static ImmutableArray<int> Expand(int[] values, int rank, string name)
    {
        if (values.Length == 1) return Enumerable.Repeat(values[0], rank).ToImmutableArray();
        if (values.Length != rank) throw new ArgumentException($"{name} needs 1 or {rank} entries, got {values.Length}");
        return values.ToImmutableArray();
    }
}
