using Fusion.Dsl.Folding;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Rules;

/// <summary>
/// The graph rules of <see cref="RuleSet.ConstantFolding"/>: <c>conv(x) * s</c> (<c>conv_mul_constant</c>) and
/// <c>conv(x) + t</c> (<c>conv_add_constant</c>), either argument order, for every convolution and transposed convolution,
/// folded into the convolution's weights and bias (<see cref="ConstantFolding.FoldScaleShift"/>); the convolution's node stays
/// and the operation's readers read it. Which constants fold is <see cref="GraphConstantFolding"/>'s contract.
/// </summary>
internal static class ConstantFoldingRules
{
    private static readonly string[] ConvKinds = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"];

    public static IEnumerable<GraphRule> Build()
    {
        yield return Rule("conv_mul_constant", "mul", (conv, f) => ConstantFolding.FoldScaleShift(conv, f, [0.0]));
        yield return Rule("conv_add_constant", "add", (conv, f) => ConstantFolding.FoldScaleShift(conv, [1.0], f));
    }

    private static GraphRule Rule(string name, string operation, Func<Conv, double[], Conv> fold)
    {
        var pattern = GraphPattern.Op("op", operation, true, GraphPattern.Module("conv", ConvKinds, GraphPattern.Input("x")), GraphPattern.Constant("constant"));
        return GraphRule.Create(name, pattern, "conv", GraphResult.Reuse,
            m => fold((Conv)m.Module("conv"), Factors(m) ?? throw new InvalidOperationException("the per-channel guard holds")),
            GraphGuard.Create("per-channel", FusionErrorKind.ChannelMismatch,
                m => Factors(m) is null
                    ? $"the constant of graph node '{m.Root.Name}' is not a finite float32 number or tensor that varies along {m.Describe("conv")}'s output channels only"
                    : null,
                "give the constant the shape [C, 1, ..., 1] or [1, C, 1, ..., 1] (one trailing 1 per spatial dimension) or a single element, in float32"));
    }

    /// <summary>The per-channel factors of the match's constant (one, or one per output channel), or null when it is not one.</summary>
    private static double[]? Factors(GraphMatch m)
    {
        var conv = (Conv)m.Module("conv");
        double[]? values = m.Constant("constant") switch
        {
            long l => [l],
            double d => [d],
            Tensor t => PerChannel(t, conv),
            _ => null,
        };
        return values is not null && values.All(double.IsFinite) ? values : null;
    }

    /// <summary>The values of <paramref name="t"/> by output channel when it broadcasts against <c>[N, C, *spatial]</c> as a
    /// per-channel constant; null otherwise.</summary>
    private static double[]? PerChannel(Tensor t, Conv conv)
    {
        if (t.DType != DType.Float32) return null;
        var s = t.Shape;
        var spatial = conv.Rank;
        if (s.Length > spatial + 2 || (s.Length == spatial + 2 && s[0] != 1)) return null;
        for (var k = 1; k <= Math.Min(spatial, s.Length); k++)
            if (s[^k] != 1) return null;
        var channels = s.Length > spatial ? s[^(spatial + 1)] : 1;
        if (channels != 1 && channels != conv.OutChannels) return null;
        var data = t.Float32;
        var values = new double[channels];
        for (var c = 0; c < channels; c++) values[c] = data[c];
        return values;
    }
}
