using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Discovery;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl;

/// <summary>
/// PyTorch's <c>torch.ao.quantization.fuse_modules</c> and <c>fuse_modules_qat</c> over the immutable module algebra.
/// Each call returns a new model: the input is never changed, subtrees outside the fused groups are shared with it, and on any
/// error (a <see cref="FusionException"/>) no model is produced. PyTorch's <c>inplace</c> argument therefore has no meaning here:
/// every call behaves like <c>inplace=False</c> without the deep copy.
/// </summary>
/// <remarks>
/// Groups apply in order and a later group sees the earlier results. Per group the first position receives the fused module and
/// the others become <c>Identity</c> in the first module's mode; the first module's forward pre-hooks and the last module's forward
/// hooks move to the fused module exactly once, and any other hook in the group is refused rather than dropped.
/// <c>fuse_modules</c> folds BatchNorm into the preceding Conv/ConvTranspose/Linear (eval mode only); <c>fuse_modules_qat</c> keeps it
/// (<c>ConvBn2d</c>, <c>ConvBnReLU2d</c>, <c>LinearBn1d</c>) whatever the training flag.
/// </remarks>
public static class Fuser
{
    /// <summary><c>fuse_modules(model, ["conv1", "bn1", "relu1"])</c>: fuses one group (eval forms).</summary>
    /// <exception cref="FusionException">The group cannot be fused; see <see cref="FusionException.Kind"/>.</exception>
    public static Module FuseModules(Module model, IEnumerable<string> group, FuseOptions? options = null)
        => Fuse(model, [CheckNotNull(group)], isQat: false, options);

    /// <summary><c>fuse_modules(model, [["conv1", "bn1"], ["conv2", "relu2"]])</c>: fuses the groups in order (eval forms).</summary>
    /// <exception cref="FusionException">A group cannot be fused, or the list is empty.</exception>
    public static Module FuseModules(Module model, IEnumerable<IEnumerable<string>> groups, FuseOptions? options = null)
        => Fuse(model, CheckNotNull(groups), isQat: false, options);

    /// <summary><c>fuse_modules_qat(model, [...])</c>: fuses one group, keeping BatchNorm for quantization-aware training.</summary>
    /// <exception cref="FusionException">The group cannot be fused; see <see cref="FusionException.Kind"/>.</exception>
    public static Module FuseModulesQat(Module model, IEnumerable<string> group, FuseOptions? options = null)
        => Fuse(model, [CheckNotNull(group)], isQat: true, options);

    /// <summary><c>fuse_modules_qat(model, [[...], [...]])</c>: fuses the groups in order, keeping BatchNorm for QAT.</summary>
    /// <exception cref="FusionException">A group cannot be fused, or the list is empty.</exception>
    public static Module FuseModulesQat(Module model, IEnumerable<IEnumerable<string>> groups, FuseOptions? options = null)
        => Fuse(model, CheckNotNull(groups), isQat: true, options);

    /// <summary><c>fuse_modules(model, modules_to_fuse)</c> with the list exactly as PyTorch received it (a flat list of
    /// names is one group, a list of lists several); <see cref="FuseSpec.FusionGroups"/> refuses a malformed list.</summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/> for an empty or mixed list or an empty group;
    /// otherwise as <see cref="FuseModules(Module, IEnumerable{IEnumerable{string}}, FuseOptions?)"/>.</exception>
    public static Module FuseModules(Module model, FuseSpec modulesToFuse, FuseOptions? options = null)
        => Fuse(model, CheckNotNull(modulesToFuse).FusionGroups(), isQat: false, options);

    /// <summary><c>fuse_modules_qat(model, modules_to_fuse)</c> with the list exactly as PyTorch received it.</summary>
    /// <exception cref="FusionException">As <see cref="FuseModules(Module, FuseSpec, FuseOptions?)"/>.</exception>
    public static Module FuseModulesQat(Module model, FuseSpec modulesToFuse, FuseOptions? options = null)
        => Fuse(model, CheckNotNull(modulesToFuse).FusionGroups(), isQat: true, options);

    /// <summary>
    /// The untyped form for callers holding PyTorch's <c>modules_to_fuse</c> as plain objects (strings and sequences, or
    /// <c>JsonElement</c>/<c>JsonNode</c> values): read by <see cref="FuseSpec.FromObject"/>, then fused as given.
    /// </summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/> for a malformed list;
    /// otherwise as <see cref="FuseModules(Module, IEnumerable{IEnumerable{string}}, FuseOptions?)"/>.</exception>
    public static Module FuseModulesRaw(Module model, object modulesToFuse, bool isQat, FuseOptions? options = null)
        => Fuse(model, FuseSpec.FromObject(modulesToFuse).FusionGroups(), isQat, options);

    private static Module Fuse(Module model, IEnumerable<IEnumerable<string>> groups, bool isQat, FuseOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        var list = groups.ToArray();
        if (list.Length == 0)
            throw FusionException.Create(FusionErrorKind.InvalidGroups, -1, [], [], "the list of groups is empty, so there is nothing to fuse",
                "give at least one group of dotted module names");
        options ??= new FuseOptions();
        var hasExtraRules = options.AdditionalRules is { Count: > 0 } || options.AdditionalFuserMethodMapping is { Count: > 0 };
        if (options.FuserFunc is not null && hasExtraRules)
            throw new ArgumentException(
                "FuseOptions: a custom FuserFunc replaces the rules, so AdditionalRules / AdditionalFuserMethodMapping would be ignored; " +
                "give either the fuser function or the additional rules");
        var plan = FusionPlan.Create(list, isQat, options.FuserFunc is null ? options.EffectiveRules() : options.Rules ?? RuleSet.Default,
            options.FuserFunc, options.AllowUnsafeDataflow);
        return plan.Apply(model);
    }

    /// <summary>
    /// Finds the groups <paramref name="rules"/> can fuse in <paramref name="model"/>, in the list-of-lists form
    /// <see cref="FuseModules(Module, IEnumerable{IEnumerable{string}}, FuseOptions?)"/> takes: runs of modules where each one's
    /// output is read by the next alone and no member runs from two places (the dataflow check always holds for them), that a rule
    /// matches, in one mode, whose hooks fusion can keep and whose rule guards hold for the requested form. At each module the longest
    /// fusable run wins (Conv+BN+ReLU over Conv+BN). Groups are ordered as torchvision's <c>fuse_model()</c> lists them: by the
    /// <c>named_modules()</c> position of the innermost container holding the group, then by execution order. Only modules whose
    /// dataflow is known are considered (see <see cref="Dataflow"/>): a graph-less user container that runs as a whole is skipped.
    /// </summary>
    /// <param name="model">The model; unchanged.</param>
    /// <param name="rules">The rules to match; PyTorch's defaults (<see cref="RuleSet.Default"/>) when null.</param>
    /// <param name="isQat">Find groups for <c>fuse_modules_qat</c> (guards checked for the QAT forms) instead of <c>fuse_modules</c>.</param>
    public static IReadOnlyList<IReadOnlyList<string>> FindFusableGroups(Module model, RuleSet? rules = null, bool isQat = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        return GroupDiscovery.Find(model, rules ?? RuleSet.Default, isQat);
    }

    /// <summary>
    /// <see cref="FindFusableGroups(Module, RuleSet?, bool)"/> with the rules in effect for <paramref name="options"/>
    /// (<see cref="FuseOptions.EffectiveRules"/>), so that the groups found are the ones
    /// <c>FuseModules(model, groups, options)</c> fuses.
    /// </summary>
    /// <exception cref="ArgumentException">The options carry a custom <see cref="FuseOptions.FuserFunc"/>: it has no patterns to find.</exception>
    public static IReadOnlyList<IReadOnlyList<string>> FindFusableGroups(Module model, FuseOptions options, bool isQat = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        if (options.FuserFunc is not null)
            throw new ArgumentException("FuseOptions: a custom FuserFunc has no patterns, so no groups can be found for it; " +
                                        "pass rules (FuseOptions.Rules / AdditionalRules) instead");
        return GroupDiscovery.Find(model, options.EffectiveRules(), isQat);
    }

    /// <summary>
    /// Folds every per-channel constant <c>mul</c>/<c>add</c> that follows a convolution in the model's forward graphs into that
    /// convolution's weights and bias, removing the operation's graph node (a pattern PyTorch's <c>fuse_modules</c> lacks; see
    /// <see cref="GraphConstantFolding"/> for what is folded and what is left alone). Returns a new model sharing every untouched
    /// module with <paramref name="model"/>, or <paramref name="model"/> itself when there is nothing to fold.
    /// </summary>
    public static Module FoldGraphConstants(Module model) => GraphConstantFolding.Apply(model);

    /// <summary>
    /// Applies the graph rules of <paramref name="rules"/> (<see cref="RuleSet.GraphRules"/>; e.g. <see cref="RuleSet.Extended"/>'s
    /// residual adds, after the chains are fused) wherever their patterns match in the model's forward graphs (see
    /// <see cref="GraphRewriter"/> for the checks). Returns a new model sharing every untouched module with
    /// <paramref name="model"/>, or <paramref name="model"/> itself when no rule applies.
    /// </summary>
    public static Module FuseGraphs(Module model, RuleSet rules) => GraphRewriter.Apply(model, rules);

    /// <summary>The rewrites <see cref="FuseGraphs"/> performs on <paramref name="model"/>, in order.</summary>
    public static IReadOnlyList<GraphFusion> FindGraphFusions(Module model, RuleSet rules) => GraphRewriter.Find(model, rules);

    private static T CheckNotNull<T>(T? value) where T : class
        => value ?? throw FusionException.Create(FusionErrorKind.InvalidGroups, -1, [], [], "modules_to_fuse is null",
            "give a list of dotted module names or a list of such lists");
}
