using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>AvgPool2d</c> (<c>divisor_override</c> is not supported).</summary>
public sealed class AvgPool2d : Module
{
    private AvgPool2d(ModuleParts parts, ImmutableArray<int> kernelSize, ImmutableArray<int> stride, ImmutableArray<int> padding,
        bool ceilMode, bool countIncludePad) : base(parts)
    {
        KernelSize = kernelSize; Stride = stride; Padding = padding; CeilMode = ceilMode; CountIncludePad = countIncludePad;
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
    /// <inheritdoc />
    public override string TypeName => "AvgPool2d";

    /// <summary>Creates an AvgPool2d; <paramref name="stride"/> defaults to the kernel size as in PyTorch.</summary>
    /// <exception cref="ArgumentException">The arguments are invalid.</exception>
    public static AvgPool2d Create(int[] kernelSize, int[]? stride = null, int[]? padding = null, bool ceilMode = false,
        bool countIncludePad = true, bool training = false)
        => new(ModuleParts.Leaf(training), PoolArgs.Pair(kernelSize), PoolArgs.Pair(stride ?? kernelSize), PoolArgs.Pair(padding ?? [0]),
            ceilMode, countIncludePad);

    private protected override Module Rebuild(ModuleParts parts) => new AvgPool2d(parts, KernelSize, Stride, Padding, CeilMode, CountIncludePad);
    private protected override bool HyperparametersEqual(Module other)
        => other is AvgPool2d m && m.KernelSize.SequenceEqual(KernelSize) && m.Stride.SequenceEqual(Stride) && m.Padding.SequenceEqual(Padding)
           && m.CeilMode == CeilMode && m.CountIncludePad == CountIncludePad;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments =>
        [new("kernel_size", KernelSize), new("stride", Stride), new("padding", Padding), new("ceil_mode", CeilMode), new("count_include_pad", CountIncludePad)];
}
