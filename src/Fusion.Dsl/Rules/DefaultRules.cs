using Fusion.Dsl.Algebra;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// PyTorch's default fuser methods (<c>torch/ao/quantization/fuser_method_mappings.py</c>) as rules. The form is chosen by
/// <c>is_qat</c> alone, never by the training flag: eval folds the BatchNorm into the layer, QAT keeps it in a
/// <c>ConvBn</c>/<c>ConvBnReLU</c>/<c>LinearBn1d</c> group.
/// </summary>
internal static class DefaultRules
{
    /// <summary>
    /// PyTorch creates each intrinsic container fresh, so it has <c>nn.Module</c>'s default <c>training=True</c> whatever the
    /// mode of its children (the fixtures record it). Kept for conformance; the container's own flag never affects its forward,
    /// which runs the children with their own flags.
    /// </summary>
    internal const bool FreshContainerTraining = true;

    public static IEnumerable<FusionRule> Build()
    {
        int[] ranks = [1, 2, 3];
        foreach (var n in ranks)
        {
            yield return ConvBn(n);
            yield return ConvBnReLU(n);
        }
        foreach (var n in ranks) yield return ConvReLU(n);
        yield return LinearBn();
        yield return Wrap("linear_relu", "LinearReLU", "Linear", "ReLU");
        yield return Wrap("bn2d_relu", "BNReLU2d", "BatchNorm2d", "ReLU");
        yield return Wrap("bn3d_relu", "BNReLU3d", "BatchNorm3d", "ReLU");
        foreach (var n in ranks) yield return ConvTransposeBn(n);
    }

    /// <summary>The intrinsic container <paramref name="typeName"/> around <paramref name="modules"/>, as PyTorch builds it.</summary>
    internal static Module Container(string typeName, params Module[] modules)
        => FusedModule.Create(typeName, modules).WithTraining(FreshContainerTraining);

    private static FusionRule ConvBn(int n) => FusionRule.Create(
        $"conv{n}d_bn{n}d", FusionPattern.Of($"Conv{n}d", $"BatchNorm{n}d"),
        (qat, m) => qat
            ? Container($"ConvBn{n}d", m[0], m[1])
            : BatchNormFolding.FoldConvBn((Conv)m[0], (BatchNorm)m[1]),
        BnGuards($"ConvBn{n}d"));

    private static FusionRule ConvBnReLU(int n) => FusionRule.Create(
        $"conv{n}d_bn{n}d_relu", FusionPattern.Of($"Conv{n}d", $"BatchNorm{n}d", "ReLU"),
        (qat, m) => qat
            ? Container($"ConvBnReLU{n}d", m[0], m[1], m[2])
            : Container($"ConvReLU{n}d", BatchNormFolding.FoldConvBn((Conv)m[0], (BatchNorm)m[1]), m[2]),
        BnGuards($"ConvBnReLU{n}d"));

    private static FusionRule ConvReLU(int n) => Wrap($"conv{n}d_relu", $"ConvReLU{n}d", $"Conv{n}d", "ReLU");

    private static FusionRule LinearBn() => FusionRule.Create(
        "linear_bn1d", FusionPattern.Of("Linear", "BatchNorm1d"),
        (qat, m) => qat ? Container("LinearBn1d", m[0], m[1]) : BatchNormFolding.FoldLinearBn((Linear)m[0], (BatchNorm)m[1]),
        FusionGuards.EvalModeForFolding("LinearBn1d"), FusionGuards.RunningStats(1), FusionGuards.AffineForQat(1),
        FusionGuards.Channels(0, 1, singleFeatureBroadcastsInEval: true));

    private static FusionRule ConvTransposeBn(int n)
    {
        var pattern = FusionPattern.Of($"ConvTranspose{n}d", $"BatchNorm{n}d");
        return FusionRule.Create(
            $"convtranspose{n}d_bn{n}d", pattern,
            (qat, m) => qat
                // Unreachable through the engine: the qat-form guard refuses first.
                ? throw new InvalidOperationException($"{pattern} has no QAT form")
                : BatchNormFolding.FoldConvTransposeBn((Conv)m[0], (BatchNorm)m[1]),
            FusionGuards.NoQatForm(pattern.ToString()), FusionGuards.EvalModeForFolding(null), FusionGuards.RunningStats(1),
            FusionGuards.Channels(0, 1));
    }

    /// <summary>A pattern whose fused form is the container in both modes (PyTorch's <c>_sequential_wrapper2</c>).</summary>
    private static FusionRule Wrap(string name, string container, params string[] kinds)
        => FusionRule.Create(name, FusionPattern.Of(kinds), (_, m) => Container(container, [.. m]));

    private static FusionGuard[] BnGuards(string qatForm) =>
    [
        FusionGuards.EvalModeForFolding(qatForm), FusionGuards.RunningStats(1), FusionGuards.AffineForQat(1), FusionGuards.Channels(0, 1),
    ];
}
