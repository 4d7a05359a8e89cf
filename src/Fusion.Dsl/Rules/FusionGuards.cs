using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// The preconditions PyTorch's fuser methods assert, as reusable named guards (the default rules use them; user rules may too).
/// Positions are indices into the group: for <c>(Conv2d, BatchNorm2d, ReLU)</c> the layer is 0 and the BatchNorm 1.
/// </summary>
public static class FusionGuards
{
    /// <summary>
    /// <c>eval-mode</c>: without QAT, folding a BatchNorm needs every module of the group in eval mode
    /// (PyTorch's <c>Fusion only for eval!</c>), because the folded layer applies the running statistics.
    /// </summary>
    /// <param name="qatForm">The fused kind QAT would produce instead (for the remedy), or null when there is none.</param>
    public static FusionGuard EvalModeForFolding(string? qatForm)
        => FusionGuard.Create("eval-mode", FusionErrorKind.TrainingMode, m =>
            {
                if (m.IsQat) return null;
                var training = Enumerable.Range(0, m.Modules.Count).Where(i => m.Modules[i].Training).Select(m.Describe).ToArray();
                return training.Length == 0
                    ? null
                    : $"Fusion only for eval! Folding the BatchNorm into the layer uses its running statistics, but {JoinAnd(training)} " +
                      $"{(training.Length == 1 ? "is" : "are")} in training mode";
            },
            qatForm is null
                ? "call Eval() on the model before fusing (F#: Model.eval)"
                : $"call Eval() on the model before fusing (F#: Model.eval), or fuse with FuseModulesQat (F#: Fuse.modulesQat) to get {qatForm}, " +
                  "which keeps the BatchNorm for training");

    /// <summary><c>running-stats</c>: the BatchNorm at <paramref name="bnPosition"/> tracks running statistics
    /// (needed to fold it, and asserted by PyTorch's QAT forms).</summary>
    public static FusionGuard RunningStats(int bnPosition)
        => FusionGuard.Create("running-stats", FusionErrorKind.NoRunningStats, m =>
            {
                var bn = m.At<BatchNorm>(bnPosition, "running-stats");
                return bn.TrackRunningStats && bn.RunningMean is not null && bn.RunningVar is not null
                    ? null
                    : $"{m.Describe(bnPosition)} has track_running_stats=False, so there are no running_mean/running_var " +
                      (m.IsQat ? "for the QAT module to use" : "to fold");
            },
            "build the BatchNorm with track_running_stats=True (and estimate its statistics), or leave it out of the group");

    /// <summary><c>affine</c>: in QAT the BatchNorm at <paramref name="bnPosition"/> must be affine (PyTorch:
    /// <c>Only support fusing BatchNorm with affine set to True</c>). Eval folding treats a non-affine BatchNorm as gamma 1, beta 0.</summary>
    public static FusionGuard AffineForQat(int bnPosition)
        => FusionGuard.Create("affine", FusionErrorKind.NotAffine, m =>
            {
                if (!m.IsQat) return null;
                var bn = m.At<BatchNorm>(bnPosition, "affine");
                return bn.Affine ? null : $"{m.Describe(bnPosition)} has affine=False, which the QAT fused modules do not support";
            },
            "use an affine BatchNorm, or fuse with FuseModules (F#: Fuse.modules) in eval mode, which folds a non-affine BatchNorm as weight 1, bias 0");

    /// <summary>
    /// <c>channels</c>: the BatchNorm at <paramref name="bnPosition"/> normalises the output channels of the layer
    /// (Conv, ConvTranspose or Linear) at <paramref name="layerPosition"/>. With <paramref name="singleFeatureBroadcastsInEval"/>,
    /// eval folding also accepts a one-feature BatchNorm, as PyTorch's <c>fuse_linear_bn_eval</c> does.
    /// </summary>
    public static FusionGuard Channels(int layerPosition, int bnPosition, bool singleFeatureBroadcastsInEval = false)
        => FusionGuard.Create("channels", FusionErrorKind.ChannelMismatch, m =>
            {
                var outChannels = m.Modules[layerPosition] switch
                {
                    Conv c => c.OutChannels,
                    Linear l => l.OutFeatures,
                    var other => throw new InvalidOperationException(
                        $"guard 'channels' expects a Conv, ConvTranspose or Linear at position {layerPosition}, found {other.TypeName}; the rule is defined wrongly"),
                };
                var bn = m.At<BatchNorm>(bnPosition, "channels");
                if (bn.NumFeatures == outChannels || (singleFeatureBroadcastsInEval && !m.IsQat && bn.NumFeatures == 1)) return null;
                return $"{m.Describe(bnPosition)} has num_features={bn.NumFeatures} but {m.Describe(layerPosition)} produces {outChannels} output channels";
            },
            "make the BatchNorm's num_features equal the layer's output channels (they are probably not consecutive layers)");

    /// <summary><c>qat-form</c>: the pattern <paramref name="pattern"/> has no QAT fused module, so <c>fuse_modules_qat</c> refuses it
    /// (PyTorch: <c>Fusing ConvTranspose+BatchNorm not yet supported in QAT.</c>).</summary>
    public static FusionGuard NoQatForm(string pattern)
        => FusionGuard.Create("qat-form", FusionErrorKind.NoQatForm,
            m => m.IsQat ? $"{pattern} has no QAT fused module, so fuse_modules_qat cannot keep the group trainable" : null,
            "fuse this group with FuseModules (F#: Fuse.modules) on an eval-mode model (folding the BatchNorm), or leave it out of the QAT fusion");

    /// <summary>"a", "a and b", "a, b and c".</summary>
    private static string JoinAnd(IReadOnlyList<string> items)
        => items.Count <= 1 ? string.Join("", items) : string.Join(", ", items.Take(items.Count - 1)) + " and " + items[^1];
}
