using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>MaxPool2d</c> (padding counts as negative infinity).</summary>
public sealed class MaxPool2d : Module
{
    private MaxPool2d(ModuleParts parts, ImmutableArray<int> kernelSize, ImmutableArray<int> stride, ImmutableArray<int> padding,
        ImmutableArray<int> dilation, bool ceilMode, ImmutableArray<string> scalarArguments) : base(parts)
    {
        KernelSize = kernelSize; Stride = stride; Padding = padding; Dilation = dilation; CeilMode = ceilMode; ScalarArguments = scalarArguments;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        PoolArgs.Check(TypeName, kernelSize, stride, padding);
        Limits.RequireArguments(TypeName, "dilation", dilation, 1);
    }

    /// <summary><c>kernel_size</c> (height, width).</summary>
    public ImmutableArray<int> KernelSize { get; }
    /// <summary><c>stride</c> (defaults to the kernel size).</summary>
    public ImmutableArray<int> Stride { get; }
    /// <summary><c>padding</c>.</summary>
    public ImmutableArray<int> Padding { get; }
    /// <summary><c>dilation</c>.</summary>
    public ImmutableArray<int> Dilation { get; }
    /// <summary><c>ceil_mode</c>.</summary>
    public bool CeilMode { get; }
    /// <summary>
    /// The size arguments (<c>kernel_size</c>, <c>stride</c>, <c>padding</c>, <c>dilation</c>) that were given as one integer, in
    /// argument order: <c>MaxPool2d(3)</c> rather than <c>MaxPool2d((3, 3))</c>. PyTorch keeps each form as given (so do its
    /// fixtures: <c>3</c> vs <c>[3, 3]</c>), and the JSON writer reproduces it. Part of equality, as in PyTorch, where
    /// <c>kernel_size == 3</c> and <c>kernel_size == (3, 3)</c> are different attributes; <see cref="Module.Arguments"/>
    /// always lists pairs.
    /// </summary>
    public ImmutableArray<string> ScalarArguments { get; }
    /// <inheritdoc />
    public override string TypeName => "MaxPool2d";

    /// <summary>The kind <c>MaxPool2d</c>; <c>return_indices=True</c> is refused.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("MaxPool2d", typeof(MaxPool2d),
        [
            Need("kernel_size", K.Size), Opt("stride", K.OptionalSize, null), Opt("padding", K.Size, 0), Opt("dilation", K.Size, 1),
            Opt("ceil_mode", K.Bool, false), Only("return_indices", K.Bool, false, "return_indices=True (pooling indices) is not supported"),
        ],
        [],
        a => Create(a.Size("kernel_size"), a.OptionalSize("stride"), a.Size("padding"), a.Size("dilation"), a.Bool("ceil_mode"), a.Training),
        (m, x) => PoolArgs.OutputShape(x, ((MaxPool2d)m).KernelSize, ((MaxPool2d)m).Stride, ((MaxPool2d)m).Padding, ((MaxPool2d)m).Dilation, ((MaxPool2d)m).CeilMode),
        new Dictionary<string, object?> { ["kernel_size"] = 2 },
        [1, 2, 6, 6],
        scalarArguments: m => ((MaxPool2d)m).ScalarArguments,
        note: "stride defaults to the kernel size; sizes keep the form given (int or pair), as PyTorch prints them");

    /// <summary>
    /// Creates a MaxPool2d; <paramref name="stride"/> defaults to the kernel size as in PyTorch. Each size takes one entry
    /// (a square window, kept as an integer: see <see cref="ScalarArguments"/>) or two (height, width).
    /// </summary>
    /// <exception cref="ArgumentException">The arguments are invalid (padding more than half the kernel, ...).</exception>
    public static MaxPool2d Create(int[] kernelSize, int[]? stride = null, int[]? padding = null, int[]? dilation = null,
        bool ceilMode = false, bool training = false)
    {
        ArgumentNullException.ThrowIfNull(kernelSize);
        // PyTorch's defaults are stride=kernel_size (same form), padding=0 and dilation=1 (integers).
        stride ??= kernelSize; padding ??= [0]; dilation ??= [1];
        return new(ModuleParts.Leaf(training), PoolArgs.Pair(kernelSize), PoolArgs.Pair(stride), PoolArgs.Pair(padding), PoolArgs.Pair(dilation),
            ceilMode, PoolArgs.Scalars(("kernel_size", kernelSize), ("stride", stride), ("padding", padding), ("dilation", dilation)));
    }

    private protected override Module Rebuild(ModuleParts parts) => new MaxPool2d(parts, KernelSize, Stride, Padding, Dilation, CeilMode, ScalarArguments);
    private protected override bool HyperparametersEqual(Module other)
        => other is MaxPool2d m && m.KernelSize.SequenceEqual(KernelSize) && m.Stride.SequenceEqual(Stride) && m.Padding.SequenceEqual(Padding)
           && m.Dilation.SequenceEqual(Dilation) && m.CeilMode == CeilMode && m.ScalarArguments.SequenceEqual(ScalarArguments);
    /// <inheritdoc />
    public override string ExtraRepr =>
        $"kernel_size={S(KernelSize, "kernel_size")}, stride={S(Stride, "stride")}, padding={S(Padding, "padding")}, " +
        $"dilation={S(Dilation, "dilation")}, ceil_mode={ModuleRepr.Bool(CeilMode)}";

    // Each size as PyTorch kept it: the int form or the pair.
    private string S(ImmutableArray<int> values, string name) => ModuleRepr.Size(values, ScalarArguments.Contains(name));

    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments =>
        [new("kernel_size", KernelSize), new("stride", Stride), new("padding", Padding), new("dilation", Dilation), new("ceil_mode", CeilMode)];
}

/// <summary>Argument handling shared by the pooling layers.</summary>
internal static class PoolArgs
{
    public static ImmutableArray<int> Pair(int[] v) => v.Length switch
    {
        1 => [v[0], v[0]],
        2 => [v[0], v[1]],
        _ => throw new ArgumentException($"pooling arguments take 1 or 2 entries, got {v.Length}"),
    };

    /// <summary>The names of the arguments given as one entry (PyTorch's integer form), in the order given.</summary>
    public static ImmutableArray<string> Scalars(params (string Name, int[] Given)[] args)
        => args.Where(a => a.Given.Length == 1).Select(a => a.Name).ToImmutableArray();

    /// <summary>[*, H', W'] for an input [*, H, W]: PyTorch's window counts along the last two axes.</summary>
    public static int[] OutputShape(int[] x, ImmutableArray<int> kernel, ImmutableArray<int> stride, ImmutableArray<int> padding,
        ImmutableArray<int> dilation, bool ceilMode)
    {
        int Axis(int i) => checked((int)SlidingWindow.PoolOutput(x[^(2 - i)], kernel[i], stride[i], padding[i], dilation[i], ceilMode));
        return [.. x[..^2], Axis(0), Axis(1)];
    }

    public static void Check(string type, ImmutableArray<int> kernel, ImmutableArray<int> stride, ImmutableArray<int> padding)
    {
        for (var i = 0; i < 2; i++)
        {
            Limits.RequireArgument(type, "kernel_size", kernel[i], 1);
            Limits.RequireArgument(type, "stride", stride[i], 1);
            if (padding[i] < 0 || (long)padding[i] * 2 > kernel[i])
                throw new ArgumentException($"{type}: pad should be at most half of effective kernel size, got padding {padding[i]} for kernel {kernel[i]}");
        }
    }
}
