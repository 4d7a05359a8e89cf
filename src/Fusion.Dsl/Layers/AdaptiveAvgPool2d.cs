using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Layers.LayerParameter;
using K = Fusion.Dsl.Layers.LayerArgumentKind;

namespace Fusion.Dsl.Layers;

/// <summary>PyTorch's <c>AdaptiveAvgPool2d(output_size)</c>: window <c>i</c> spans <c>[floor(i·in/out), ceil((i+1)·in/out))</c>.</summary>
public sealed class AdaptiveAvgPool2d : Module
{
    private AdaptiveAvgPool2d(ModuleParts parts, ImmutableArray<int> outputSize, bool isScalar) : base(parts)
    {
        OutputSize = outputSize; OutputSizeIsScalar = isScalar;
        RequireNoChildren(parts, TypeName);
        RequireStateNames(parts, TypeName);
        Limits.RequireArguments(TypeName, "output_size", outputSize, 1);
    }

    /// <summary><c>output_size</c> (height, width).</summary>
    public ImmutableArray<int> OutputSize { get; }
    /// <summary>
    /// Whether <c>output_size</c> was given as one integer: <c>AdaptiveAvgPool2d(1)</c> (torchvision's MobileNets) rather
    /// than <c>AdaptiveAvgPool2d((1, 1))</c> (its ResNets). PyTorch keeps the form as given (so do its fixtures: <c>1</c> vs
    /// <c>[1, 1]</c>), and the JSON writer reproduces it. Part of equality, as in PyTorch, where the two forms are different
    /// attributes; <see cref="OutputSize"/> and <see cref="Module.Arguments"/> always hold the pair.
    /// </summary>
    public bool OutputSizeIsScalar { get; }
    /// <summary>The size arguments given as one integer: <c>output_size</c> or none (see <see cref="OutputSizeIsScalar"/>);
    /// the same view as <see cref="MaxPool2d.ScalarArguments"/>.</summary>
    public ImmutableArray<string> ScalarArguments => OutputSizeIsScalar ? ["output_size"] : [];
    /// <inheritdoc />
    public override string TypeName => "AdaptiveAvgPool2d";

    /// <summary>The kind <c>AdaptiveAvgPool2d</c>.</summary>
    internal static LayerDescriptor Descriptor { get; } = new("AdaptiveAvgPool2d", typeof(AdaptiveAvgPool2d),
        [Need("output_size", K.Size)], [],
        a => Create(a.Size("output_size"), a.Training),
        (m, x) => [.. x[..^2], .. ((AdaptiveAvgPool2d)m).OutputSize],
        new Dictionary<string, object?> { ["output_size"] = 1 },
        [1, 2, 5, 5],
        scalarArguments: m => ((AdaptiveAvgPool2d)m).ScalarArguments,
        note: "1 or (1, 1), kept in the form given");

    /// <summary>Creates an AdaptiveAvgPool2d; one entry means a square output, kept as an integer (see <see cref="OutputSizeIsScalar"/>).</summary>
    /// <exception cref="ArgumentException">An entry is not positive, or there are not 1 or 2 entries.</exception>
    public static AdaptiveAvgPool2d Create(int[] outputSize, bool training = false)
    {
        ArgumentNullException.ThrowIfNull(outputSize);
        return new(ModuleParts.Leaf(training), PoolArgs.Pair(outputSize), outputSize.Length == 1);
    }

    private protected override Module Rebuild(ModuleParts parts) => new AdaptiveAvgPool2d(parts, OutputSize, OutputSizeIsScalar);
    private protected override bool HyperparametersEqual(Module other)
        => other is AdaptiveAvgPool2d a && a.OutputSize.SequenceEqual(OutputSize) && a.OutputSizeIsScalar == OutputSizeIsScalar;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [new("output_size", OutputSize)];
    /// <inheritdoc />
    public override string ExtraRepr => $"output_size={ModuleRepr.Size(OutputSize, OutputSizeIsScalar)}";
}
