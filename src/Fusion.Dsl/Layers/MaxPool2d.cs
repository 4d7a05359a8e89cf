using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>MaxPool2d</c> (padding counts as negative infinity).</summary>
public sealed class MaxPool2d : Module
{
    private MaxPool2d(ModuleParts parts, ImmutableArray<int> kernelSize, ImmutableArray<int> stride, ImmutableArray<int> padding,
        ImmutableArray<int> dilation, bool ceilMode) : base(parts)
    {
        KernelSize = kernelSize; Stride = stride; Padding = padding; Dilation = dilation; CeilMode = ceilMode;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        PoolArgs.Check(TypeName, kernelSize, stride, padding);
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
    /// <inheritdoc />
    public override string TypeName => "MaxPool2d";

    /// <summary>Creates a MaxPool2d; <paramref name="stride"/> defaults to the kernel size as in PyTorch.</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (padding more than half the kernel, ...).</exception>
    public static MaxPool2d Create(int[] kernelSize, int[]? stride = null, int[]? padding = null, int[]? dilation = null,
        bool ceilMode = false, bool training = false)
        => new(ModuleParts.Leaf(training), PoolArgs.Pair(kernelSize), PoolArgs.Pair(stride ?? kernelSize), PoolArgs.Pair(padding ?? [0]),
            PoolArgs.Pair(dilation ?? [1]), ceilMode);

    private protected override Module Rebuild(ModuleParts parts) => new MaxPool2d(parts, KernelSize, Stride, Padding, Dilation, CeilMode);
    private protected override bool HyperparametersEqual(Module other)
        => other is MaxPool2d m && m.KernelSize.SequenceEqual(KernelSize) && m.Stride.SequenceEqual(Stride) && m.Padding.SequenceEqual(Padding)
           && m.Dilation.SequenceEqual(Dilation) && m.CeilMode == CeilMode;
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

    public static void Check(string type, ImmutableArray<int> kernel, ImmutableArray<int> stride, ImmutableArray<int> padding)
    {
        for (var i = 0; i < 2; i++)
        {
            if (kernel[i] <= 0 || stride[i] <= 0) throw new ArgumentException($"{type}: kernel_size and stride must be positive");
            if (padding[i] < 0 || padding[i] * 2 > kernel[i])
                throw new ArgumentException($"{type}: pad should be at most half of effective kernel size, got padding {padding[i]} for kernel {kernel[i]}");
        }
    }

    /// <summary>Output length of a pooling window along one dimension, PyTorch's formula including the ceil_mode rule.</summary>
    public static int OutputSize(int input, int kernel, int stride, int pad, int dilation, bool ceilMode)
    {
        var span = input + 2 * pad - dilation * (kernel - 1) - 1;
        var o = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1;
        // PyTorch: the last window must start inside the input or left padding.
        if (ceilMode && (o - 1) * stride >= input + pad) o--;
        return o;
    }
}
