using System.Collections;
using System.Text.Json;
using System.Text.Json.Nodes;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl;

/// <summary>
/// Options of <see cref="Fuser"/>, mirroring the optional arguments of PyTorch's <c>fuse_modules</c>. Unlike PyTorch 1.13,
/// which silently ignores <c>fuser_func</c> and <c>fuse_custom_config_dict</c>, every option here is honoured.
/// </summary>
public sealed class FuseOptions
{
    /// <summary>
    /// PyTorch's <c>fuser_func</c>: <c>(modules, isQat) → modules</c>, called once per group with the group's modules (hooks
    /// detached; the engine moves them) and returning as many modules, which replace the group position by position.
    /// When set, the rules are not consulted. Null: the rule-based fuser (PyTorch's <c>fuse_known_modules</c>).
    /// </summary>
    public Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>? FuserFunc { get; init; }

    /// <summary>
    /// PyTorch's <c>fuse_custom_config_dict["additional_fuser_method_mapping"]</c>: pattern → <c>(isQat, modules) → fused module</c>.
    /// Each entry becomes a guard-free rule that replaces the rule for the same pattern.
    /// </summary>
    public IReadOnlyDictionary<FusionPattern, Func<bool, IReadOnlyList<Module>, Module>>? AdditionalFuserMethodMapping { get; init; }

    /// <summary>Further rules (with guards) applied over <see cref="Rules"/> before the mapping; a rule for an existing pattern wins.</summary>
    public IReadOnlyList<FusionRule>? AdditionalRules { get; init; }

    /// <summary>The base rules; PyTorch's defaults unless replaced (<see cref="RuleSet.Extended"/> adds this project's patterns).</summary>
    public RuleSet Rules { get; init; } = RuleSet.Default;

    /// <summary>
    /// Force PyTorch's behaviour: fuse a group even when the model's dataflow shows it is unsafe (a member's output also read
    /// elsewhere, or a member called from several places, such as torchvision's non-quantizable <c>BasicBlock</c> reusing
    /// <c>self.relu</c> after the residual add). False by default: such a group is refused with
    /// <see cref="FusionErrorKind.UnsafeDataflow"/>, naming the other call sites and readers.
    /// </summary>
    public bool AllowUnsafeDataflow { get; init; }

    /// <summary>The rules in effect: <see cref="Rules"/> overridden by <see cref="AdditionalRules"/>, then by the mapping.</summary>
    /// <exception cref="ArgumentException"><see cref="Rules"/> is null, or a mapping entry has a null key or function.</exception>
    public RuleSet EffectiveRules()
    {
        var rules = (Rules ?? throw new ArgumentException("FuseOptions.Rules is null; leave it unset for PyTorch's defaults"))
            .Override(AdditionalRules ?? []);
        if (AdditionalFuserMethodMapping is null) return rules;
        return rules.Override(AdditionalFuserMethodMapping.Select(kv => FusionRule.Create(
            $"additional {kv.Key ?? throw new ArgumentException("additional_fuser_method_mapping has a null pattern")}",
            kv.Key,
            kv.Value ?? throw new ArgumentException($"additional_fuser_method_mapping maps {kv.Key} to null"))));
    }
}

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

    /// <summary>
    /// The untyped form for callers that pass PyTorch's <c>modules_to_fuse</c> through unchanged (the conformance runner):
    /// either a list of names (one group) or a list of lists of names. Items may be strings, non-string sequences, or
    /// <see cref="JsonElement"/> / <see cref="JsonNode"/> values holding strings and arrays.
    /// </summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/> for an empty list, a mixed list of names and lists,
    /// an empty group or a non-string name; otherwise as <see cref="FuseModules(Module, IEnumerable{IEnumerable{string}}, FuseOptions?)"/>.</exception>
    public static Module FuseModulesRaw(Module model, object modulesToFuse, bool isQat, FuseOptions? options = null)
        => Fuse(model, ParseModulesToFuse(modulesToFuse), isQat, options);

    /// <summary>
    /// Reads PyTorch's <c>modules_to_fuse</c> (a list of names, or a list of lists of names) into groups, as
    /// <c>_fuse_modules</c> does: all names → one group; all lists → one group each.
    /// </summary>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/>: not a list, empty, mixed, an empty group,
    /// or an item that is neither a name nor a list of names.</exception>
    public static IReadOnlyList<IReadOnlyList<string>> ParseModulesToFuse(object modulesToFuse)
    {
        FusionException Invalid(int group, string problem, string remedy)
            => FusionException.Create(FusionErrorKind.InvalidGroups, group, [], [], problem, remedy);
        const string shape = "give either one list of dotted names (a single group) or a list of such lists";
        var items = AsList(Normalize(modulesToFuse)) ?? throw Invalid(-1, $"expected a list, got {Describe(modulesToFuse)}", shape);
        if (items.Count == 0) throw Invalid(-1, "the list is empty, so there is nothing to fuse", shape);
        var names = items.Select((x, i) => (x, i)).Where(t => t.x is string).Select(t => t.i).ToArray();
        if (names.Length == items.Count) return [items.Cast<string>().ToArray()];
        if (names.Length > 0)
        {
            var list = Enumerable.Range(0, items.Count).First(i => items[i] is not string);
            throw Invalid(-1,
                $"the list mixes names and lists: item {names[0]} is the name '{items[names[0]]}' but item {list} is {Describe(items[list])}", shape);
        }
        var groups = new List<IReadOnlyList<string>>(items.Count);
        for (var g = 0; g < items.Count; g++)
        {
            var inner = AsList(items[g]) ?? throw Invalid(g, $"item {g} is {Describe(items[g])}, neither a name nor a list of names", shape);
            if (inner.Count == 0) throw Invalid(g, $"group {g} is empty", "give at least one dotted module name per group, or drop the empty group");
            for (var k = 0; k < inner.Count; k++)
                if (inner[k] is not string)
                    throw Invalid(g, $"entry {k} of group {g} is {Describe(inner[k])}, not a name", "groups hold dotted module names only");
            groups.Add(inner.Cast<string>().ToArray());
        }
        return groups;
    }

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

    private static T CheckNotNull<T>(T? value) where T : class
        => value ?? throw FusionException.Create(FusionErrorKind.InvalidGroups, -1, [], [], "modules_to_fuse is null",
            "give a list of dotted module names or a list of such lists");

    /// <summary>JSON values become strings and lists so both plain and JSON arguments parse alike.</summary>
    private static object? Normalize(object? value) => value switch
    {
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString(),
        JsonElement { ValueKind: JsonValueKind.Array } e => e.EnumerateArray().Select(x => Normalize(x)).ToList(),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonArray a => a.Select(x => Normalize(x)).ToList(),
        _ => value,
    };

    private static IReadOnlyList<object?>? AsList(object? value)
        => Normalize(value) switch
        {
            string => null,
            IEnumerable e => e.Cast<object?>().Select(Normalize).ToList(),
            _ => null,
        };

    private static string Describe(object? value) => Normalize(value) switch
    {
        null => "null",
        string s => $"the name '{s}'",
        IEnumerable => "a list",
        JsonElement e => $"a JSON {e.ValueKind.ToString().ToLowerInvariant()}",
        var v => $"a {v.GetType().Name} ({v})",
    };
}
