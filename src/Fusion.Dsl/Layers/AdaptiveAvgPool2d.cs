using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>AdaptiveAvgPool2d(output_size)</c>: window <c>i</c> spans <c>[floor(i·in/out), ceil((i+1)·in/out))</c>.</summary>
public sealed class AdaptiveAvgPool2d : Module
{
    private AdaptiveAvgPool2d(ModuleParts parts, ImmutableArray<int> outputSize) : base(parts)
    {
        OutputSize = outputSize;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        if (outputSize.Any(x => x <= 0)) throw new ArgumentException($"AdaptiveAvgPool2d: output_size must be positive, got ({string.Join(", ", outputSize)})");
    }

    /// <summary><c>output_size</c> (height, width).</summary>
    public ImmutableArray<int> OutputSize { get; }
    /// <inheritdoc />
    public override string TypeName => "AdaptiveAvgPool2d";

    /// <summary>Creates an AdaptiveAvgPool2d; one entry means a square output.</summary>
    /// <exception cref="ArgumentException">An entry is not positive.</exception>
    public static AdaptiveAvgPool2d Create(int[] outputSize, bool training = false) => new(ModuleParts.Leaf(training), PoolArgs.Pair(outputSize));

    private protected override Module Rebuild(ModuleParts parts) => new AdaptiveAvgPool2d(parts, OutputSize);
    private protected override bool HyperparametersEqual(Module other) => other is AdaptiveAvgPool2d a && a.OutputSize.SequenceEqual(OutputSize);
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("output_size", OutputSize)];
}
