using Fusion.Dsl.Algebra;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// Fusion patterns PyTorch lacks, added on top of its defaults by <see cref="RuleSet.Extended"/>. Their fused containers are this
/// project's own kinds in the <c>fusion.dsl</c> namespace (<c>ConvReLU6_2d</c>, <c>ConvHardswish2d</c>, <c>ConvSiLU2d</c>,
/// <c>ConvBnReLU6_2d</c>, <c>ConvBnHardswish2d</c>, <c>ConvBnSiLU2d</c>, <c>ConvTransposeReLU2d</c>, <c>LinearReLU6</c>, <c>LinearBnReLU1d</c>, <c>BNReLU1d</c>), which
/// PyTorch cannot load: a model fused with them runs here (or after unfusing), not in <c>torch.ao.nn.intrinsic</c>.
/// As for the defaults, eval folds BatchNorm into the neighbouring layer and QAT keeps it where a QAT container exists.
/// </summary>
internal static class ExtendedRules
{
    public static IEnumerable<FusionRule> Build()
    {
        int[] ranks = [1, 2, 3];
        foreach (var n in ranks)
        {
            yield return Wrap($"conv{n}d_relu6", $"ConvReLU6_{n}d", $"Conv{n}d", "ReLU6");
            yield return Wrap($"conv{n}d_hardswish", $"ConvHardswish{n}d", $"Conv{n}d", "Hardswish");
            yield return ConvBnActivation(n, "ReLU6", $"ConvReLU6_{n}d", $"ConvBnReLU6_{n}d");
            yield return ConvBnActivation(n, "Hardswish", $"ConvHardswish{n}d", $"ConvBnHardswish{n}d");
            // EfficientNet's Conv2dNormActivation: the SiLU then runs in the convolution's stores instead of a pass of its own.
            yield return Wrap($"conv{n}d_silu", $"ConvSiLU{n}d", $"Conv{n}d", "SiLU");
            yield return ConvBnActivation(n, "SiLU", $"ConvSiLU{n}d", $"ConvBnSiLU{n}d");
            yield return Wrap($"convtranspose{n}d_relu", $"ConvTransposeReLU{n}d", $"ConvTranspose{n}d", "ReLU");
            yield return ConvTransposeBnReLU(n);
            yield return BnConv(n);
        }
        yield return Wrap("linear_relu6", "LinearReLU6", "Linear", "ReLU6");
        yield return LinearBnReLU();
        yield return Wrap("bn1d_relu", "BNReLU1d", "BatchNorm1d", "ReLU");
        yield return BnLinear();
    }

    /// <summary>
    /// The graph rules: for N = 1, 2, 3, <c>conv{N}d_add_relu</c> (<c>relu(conv(x) + residual)</c>, the ReLU a module or the
    /// function or method, the add in either order) and then <c>conv{N}d_add</c> (<c>conv(x) + residual</c>). The convolution
    /// becomes <c>ConvAddReLU{N}d</c> or <c>ConvAdd{N}d</c> at its own path, called where the last matched node was with
    /// <c>(x, residual)</c>: the residual join of a ResNet block after its Conv+BatchNorm fusion (the Identity left where the
    /// BatchNorm was is looked through). The arithmetic is unchanged (the same addition, then the same ReLU), so the rewrite
    /// keeps every bit of the output.
    /// </summary>
    public static IEnumerable<GraphRule> BuildGraph()
    {
        int[] ranks = [1, 2, 3];
        foreach (var relu in new[] { true, false })
            foreach (var n in ranks)
                yield return ConvAdd(n, relu);
    }

    private static GraphRule ConvAdd(int n, bool relu)
    {
        var conv = GraphPattern.Module("conv", [$"Conv{n}d"], GraphPattern.Input("x"));
        var add = GraphPattern.Op("add", "add", true, conv, GraphPattern.Input("residual"));
        var pattern = relu ? GraphPattern.Either(GraphPattern.Module("relu", ["ReLU"], add), GraphPattern.Op("relu", "relu", false, add)) : add;
        return GraphRule.Create(relu ? $"conv{n}d_add_relu" : $"conv{n}d_add", pattern, "conv", GraphResult.Call("x", "residual"),
            m =>
            {
                var c = m.Module("conv");
                return relu
                    ? FusedModule.Create($"ConvAddReLU{n}d", c, Activation.Create(ActivationKind.ReLU, training: c.Training))
                    : FusedModule.Create($"ConvAdd{n}d", c);
            });
    }

    /// <summary>(ConvNd, BatchNormNd, activation): eval folds into the conv and wraps it with the activation; QAT keeps all three.</summary>
    private static FusionRule ConvBnActivation(int n, string activation, string evalForm, string qatForm) => FusionRule.Create(
        $"conv{n}d_bn{n}d_{activation.ToLowerInvariant()}", FusionPattern.Of($"Conv{n}d", $"BatchNorm{n}d", activation),
        (qat, m) => qat
            ? DefaultRules.Container(qatForm, m[0], m[1], m[2])
            : DefaultRules.Container(evalForm, BatchNormFolding.FoldConvBn((Conv)m[0], (BatchNorm)m[1]), m[2]),
        FusionGuards.EvalModeForFolding(qatForm), FusionGuards.RunningStats(1), FusionGuards.AffineForQat(1), FusionGuards.Channels(0, 1));

    /// <summary>(ConvTransposeNd, BatchNormNd, ReLU): eval only, like PyTorch's (ConvTransposeNd, BatchNormNd).</summary>
    private static FusionRule ConvTransposeBnReLU(int n)
    {
        var pattern = FusionPattern.Of($"ConvTranspose{n}d", $"BatchNorm{n}d", "ReLU");
        return FusionRule.Create($"convtranspose{n}d_bn{n}d_relu", pattern,
            (qat, m) => qat
                ? throw new InvalidOperationException($"{pattern} has no QAT form")   // the qat-form guard refuses first
                : DefaultRules.Container($"ConvTransposeReLU{n}d", BatchNormFolding.FoldConvTransposeBn((Conv)m[0], (BatchNorm)m[1]), m[2]),
            FusionGuards.NoQatForm(pattern.ToString()), FusionGuards.EvalModeForFolding(null), FusionGuards.RunningStats(1),
            FusionGuards.Channels(0, 1));
    }

    /// <summary>(Linear, BatchNorm1d, ReLU): eval gives PyTorch's LinearReLU around the folded Linear; QAT keeps LinearBnReLU1d.</summary>
    private static FusionRule LinearBnReLU() => FusionRule.Create(
        "linear_bn1d_relu", FusionPattern.Of("Linear", "BatchNorm1d", "ReLU"),
        (qat, m) => qat
            ? DefaultRules.Container("LinearBnReLU1d", m[0], m[1], m[2])
            : DefaultRules.Container("LinearReLU", BatchNormFolding.FoldLinearBn((Linear)m[0], (BatchNorm)m[1]), m[2]),
        FusionGuards.EvalModeForFolding("LinearBnReLU1d"), FusionGuards.RunningStats(1), FusionGuards.AffineForQat(1),
        FusionGuards.Channels(0, 1));

    /// <summary>(BatchNormNd, ConvNd): the BatchNorm folded into the following conv's weights (eval only; no QAT form).</summary>
    private static FusionRule BnConv(int n)
    {
        var pattern = FusionPattern.Of($"BatchNorm{n}d", $"Conv{n}d");
        return FusionRule.Create($"bn{n}d_conv{n}d", pattern,
            (qat, m) => qat
                ? throw new InvalidOperationException($"{pattern} has no QAT form")
                : PrecedingBatchNormFolding.FoldBnConv((BatchNorm)m[0], (Conv)m[1]),
            FusionGuards.NoQatForm(pattern.ToString()), FusionGuards.EvalModeForFolding(null), FusionGuards.RunningStats(0),
            InputChannels(0, 1), NoZeroPadding(1));
    }

    /// <summary>(BatchNorm1d, Linear): the BatchNorm folded into the following Linear (eval only; 2-D inputs, see
    /// <see cref="PrecedingBatchNormFolding.FoldBnLinear"/>).</summary>
    private static FusionRule BnLinear()
    {
        var pattern = FusionPattern.Of("BatchNorm1d", "Linear");
        return FusionRule.Create("bn1d_linear", pattern,
            (qat, m) => qat
                ? throw new InvalidOperationException($"{pattern} has no QAT form")
                : PrecedingBatchNormFolding.FoldBnLinear((BatchNorm)m[0], (Linear)m[1]),
            FusionGuards.NoQatForm(pattern.ToString()), FusionGuards.EvalModeForFolding(null), FusionGuards.RunningStats(0),
            InputChannels(0, 1));
    }

    /// <summary><c>input-channels</c>: the BatchNorm at <paramref name="bnPosition"/> normalises the inputs of the layer after it.</summary>
    private static FusionGuard InputChannels(int bnPosition, int layerPosition)
        => FusionGuard.Create("input-channels", FusionErrorKind.ChannelMismatch, m =>
            {
                var bn = m.At<BatchNorm>(bnPosition, "input-channels");
                var inputs = m.Modules[layerPosition] switch
                {
                    Conv c => c.InChannels,
                    Linear l => l.InFeatures,
                    var other => throw new InvalidOperationException(
                        $"guard 'input-channels' expects a Conv or Linear at position {layerPosition}, found {other.TypeName}; the rule is defined wrongly"),
                };
                return bn.NumFeatures == inputs
                    ? null
                    : $"{m.Describe(bnPosition)} has num_features={bn.NumFeatures} but {m.Describe(layerPosition)} reads {inputs} input channels";
            },
            "make the BatchNorm's num_features equal the next layer's input channels (they are probably not consecutive layers)");

    /// <summary><c>no-zero-padding</c>: the conv at <paramref name="convPosition"/> does not zero-pad, so a BatchNorm before it folds
    /// exactly (see <see cref="PrecedingBatchNormFolding.ZeroPaddingProblem"/>).</summary>
    private static FusionGuard NoZeroPadding(int convPosition)
        => FusionGuard.Create("no-zero-padding", FusionErrorKind.PaddingNotFoldable,
            m => PrecedingBatchNormFolding.ZeroPaddingProblem(m.At<Conv>(convPosition, "no-zero-padding")) is { } p
                ? $"{m.Describe(convPosition)}: {p}"
                : null,
            "leave this BatchNorm unfused, or use a convolution without padding (padding=0 or 'valid') or with a copying padding_mode " +
            "('reflect', 'replicate', 'circular')");

    /// <summary>A pattern whose fused form is the container in both modes.</summary>
    private static FusionRule Wrap(string name, string container, params string[] kinds)
        => FusionRule.Create(name, FusionPattern.Of(kinds), (_, m) => DefaultRules.Container(container, [.. m]));
}
