using Fusion.Dsl.Algebra;
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
