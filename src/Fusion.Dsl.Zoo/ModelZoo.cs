namespace Fusion.Dsl.Zoo;

/// <summary>
/// Built-in networks with torchvision's <i>quantizable</i> architectures and exact module names
/// (<c>torchvision.models.quantization</c> 0.14 with <c>weights=None, quantize=False</c>): <c>resnet18</c>, <c>resnet50</c>,
/// <c>mobilenet_v2</c>. Weights are random but reproducible, drawn with torchvision's initialisation; load trained weights
/// from a <c>state_dict</c> by key, since every key matches PyTorch's.
/// </summary>
public static class ModelZoo
{
    /// <summary>The names <see cref="Create"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = Array.AsReadOnly(["resnet18", "resnet50", "mobilenet_v2"]);

    /// <summary>
    /// Builds network <paramref name="name"/> in eval mode. Convolutions get <c>kaiming_normal_(mode="fan_out")</c> weights,
    /// the classifier torchvision's own initialisation, BatchNorm PyTorch's initial state (weight 1, bias 0, mean 0,
    /// variance 1) — or, with <paramref name="randomizeBatchNorm"/>, random affine parameters and running statistics
    /// (γ, variance ~ U(0.25, 1.75); β, mean ~ N(0, 0.5²)) so that folding BatchNorm into convolutions is not a no-op.
    /// Every tensor is drawn from a stream keyed by <paramref name="seed"/> and its <c>state_dict</c> key: the same
    /// arguments give bit-identical weights.
    /// </summary>
    /// <param name="name">One of <see cref="Names"/>.</param>
    /// <param name="seed">Seed of the random weights.</param>
    /// <param name="numClasses">Outputs of the final Linear layer.</param>
    /// <param name="widthMult">MobileNetV2's width multiplier (channel counts scaled and rounded to multiples of 8);
    /// must stay 1 for the ResNets, which have none.</param>
    /// <param name="randomizeBatchNorm">Draw BatchNorm parameters and statistics at random instead of PyTorch's initial values.</param>
    /// <exception cref="ArgumentException">The name is unknown (the message lists the known ones), <paramref name="numClasses"/>
    /// is not positive, or <paramref name="widthMult"/> is not a positive finite number or is given to a ResNet.</exception>
    public static ZooModel Create(string name, int seed = 0, int numClasses = 1000, double widthMult = 1.0, bool randomizeBatchNorm = false)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!Names.Contains(name))
            throw new ArgumentException($"unknown zoo model '{name}'; known models: {string.Join(", ", Names)}", nameof(name));
        if (numClasses <= 0) throw new ArgumentException($"numClasses must be positive, got {numClasses}", nameof(numClasses));
        if (!double.IsFinite(widthMult) || widthMult <= 0)
            throw new ArgumentException($"widthMult must be a positive finite number, got {widthMult}", nameof(widthMult));
        if (name is "resnet18" or "resnet50" && widthMult != 1.0)
            throw new ArgumentException($"widthMult applies to mobilenet_v2 only; {name} has no width multiplier (got {widthMult})", nameof(widthMult));
        return name switch
        {
            "resnet18" => QuantizableResNet.Build(name, [2, 2, 2, 2], bottleneck: false, seed, numClasses, randomizeBatchNorm),
            "resnet50" => QuantizableResNet.Build(name, [3, 4, 6, 3], bottleneck: true, seed, numClasses, randomizeBatchNorm),
            "mobilenet_v2" => QuantizableMobileNetV2.Build(name, seed, numClasses, widthMult, randomizeBatchNorm),
            _ => throw new InvalidOperationException($"zoo model '{name}' is listed in Names but has no builder"),
        };
    }
}
