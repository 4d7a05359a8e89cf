using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>AvgPool2d</c> (<c>divisor_override</c> is not supported).</summary>
public sealed class AvgPool2d : Module
{
    private AvgPool2d(ModuleParts parts, ImmutableArray<int> kernelSize, ImmutableArray<int> stride, ImmutableArray<int> padding,
        bool ceilMode, bool countIncludePad, ImmutableArray<string> scalarArguments) : base(parts)
    {
        KernelSize = kernelSize; Stride = stride; Padding = padding; CeilMode = ceilMode; CountIncludePad = countIncludePad;
        ScalarArguments = scalarArguments;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        PoolArgs.Check(TypeName, kernelSize, stride, padding);
    }

    /// <summary><c>kernel_size</c>.</summary>
    public ImmutableArray<int> KernelSize { get; }
    /// <summary><c>stride</c> (defaults to the kernel size).</summary>
    public ImmutableArray<int> Stride { get; }
    /// <summary><c>padding</c>.</summary>
    public ImmutableArray<int> Padding { get; }
    /// <summary><c>ceil_mode</c>.</summary>
    public bool CeilMode { get; }
    /// <summary><c>count_include_pad</c>: whether zero padding counts in the divisor.</summary>
    public bool CountIncludePad { get; }
    /// <summary>
    /// The size arguments (<c>kernel_size</c>, <c>stride</c>, <c>padding</c>) that were given as one integer, in argument
    /// order: <c>AvgPool2d(2)</c> rather than <c>AvgPool2d((2, 2))</c>. PyTorch keeps each form as given (so do its fixtures:
    /// <c>2</c> vs <c>[2, 2]</c>), and the JSON writer reproduces it. Part of equality, as in PyTorch, where the two forms
    /// are different attributes; <see cref="Module.Arguments"/> always lists pairs.
    /// </summary>
    public ImmutableArray<string> ScalarArguments { get; }
    /// <inheritdoc />
    public override string TypeName => "AvgPool2d";

    /// <summary>The kind <c>AvgPool2d</c>; a <c>divisor_override</c> is refused.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("AvgPool2d", typeof(AvgPool2d),
        [
            Need("kernel_size", K.Size), Opt("stride", K.OptionalSize, null), Opt("padding", K.Size, 0), Opt("ceil_mode", K.Bool, false),
            Opt("count_include_pad", K.Bool, true), Only("divisor_override", K.OptionalInt, null, "divisor_override is not supported"),
        ],
        [],
        a => Create(a.Size("kernel_size"), a.OptionalSize("stride"), a.Size("padding"), a.Bool("ceil_mode"), a.Bool("count_include_pad"), a.Training),
        (m, x) => PoolArgs.OutputShape(x, ((AvgPool2d)m).KernelSize, ((AvgPool2d)m).Stride, ((AvgPool2d)m).Padding, [1, 1], ((AvgPool2d)m).CeilMode),
        new Dictionary<string, object?> { ["kernel_size"] = 2 },
        [1, 2, 6, 6],
        scalarArguments: m => ((AvgPool2d)m).ScalarArguments,
        note: "stride defaults to the kernel size; sizes keep the form given (int or pair), as PyTorch prints them");

    /// <summary>
    /// Creates an AvgPool2d; <paramref name="stride"/> defaults to the kernel size as in PyTorch. Each size takes one entry
    /// (a square window, kept as an integer: see <see cref="ScalarArguments"/>) or two (height, width).
    /// </summary>
    /// <exception cref="ArgumentException">The arguments are invalid.</exception>
    public static AvgPool2d Create(int[] kernelSize, int[]? stride = null, int[]? padding = null, bool ceilMode = false,
        bool countIncludePad = true, bool training = false)
    {
        ArgumentNullException.ThrowIfNull(kernelSize);
        // PyTorch's defaults are stride=kernel_size (same form) and padding=0 (an integer).
        stride ??= kernelSize; padding ??= [0];
        return new(ModuleParts.Leaf(training), PoolArgs.Pair(kernelSize), PoolArgs.Pair(stride), PoolArgs.Pair(padding), ceilMode, countIncludePad,
            PoolArgs.Scalars(("kernel_size", kernelSize), ("stride", stride), ("padding", padding)));
    }

    private protected override Module Rebuild(ModuleParts parts) => new AvgPool2d(parts, KernelSize, Stride, Padding, CeilMode, CountIncludePad, ScalarArguments);
    private protected override bool HyperparametersEqual(Module other)
        => other is AvgPool2d m && m.KernelSize.SequenceEqual(KernelSize) && m.Stride.SequenceEqual(Stride) && m.Padding.SequenceEqual(Padding)
           && m.CeilMode == CeilMode && m.CountIncludePad == CountIncludePad && m.ScalarArguments.SequenceEqual(ScalarArguments);
    /// <inheritdoc />
    public override string ExtraRepr =>
        $"kernel_size={S(KernelSize, "kernel_size")}, stride={S(Stride, "stride")}, padding={S(Padding, "padding")}";

    // Each size as PyTorch kept it: the int form or the pair.
    private string S(ImmutableArray<int> values, string name) => ModuleRepr.Size(values, ScalarArguments.Contains(name));

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments =>
        [new("kernel_size", KernelSize), new("stride", Stride), new("padding", Padding), new("ceil_mode", CeilMode), new("count_include_pad", CountIncludePad)];
}
