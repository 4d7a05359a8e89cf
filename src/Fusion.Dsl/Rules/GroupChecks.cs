using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Rules;

/// <summary>
/// The checks a group passes before its result is computed, in PyTorch's order: a rule for its kinds (PyTorch looks the
/// fuser method up first), one mode for all members, hooks that can move, then the rule's guards on the members without
/// their hooks. Shared by the plan, which reports the first refusal, and discovery, which keeps the groups with none,
/// so the two cannot disagree about what fuses.
/// </summary>
internal static class GroupChecks
{
    /// <summary>Why a group is refused, as a <see cref="FusionException"/> reports it.</summary>
    internal sealed record Refusal(FusionErrorKind Kind, string Problem, string Remedy, string? Rule, string? Guard);

    /// <summary>The outcome: the first refusal (or null), the rule that matched (null with a custom fuser), and the members
    /// without hooks, which rules and fusers see so that a hook never ends up both copied and moved.</summary>
    internal sealed record Result(Refusal? Refusal, FusionRule? Rule, Module[] Bare);

    /// <summary>Checks group <paramref name="index"/>; <paramref name="rules"/> is null when a custom fuser computes the result.</summary>
    public static Result Run(RuleSet? rules, int index, IReadOnlyList<string> paths, Module[] modules, bool isQat)
    {
        var kinds = modules.Select(RuleSet.KindOf).ToArray();
        FusionRule? rule = null;
        if (rules is not null && (rule = rules.Find(kinds)) is null)
        {
            var near = rules.StartingWith(kinds[0]).Select(r => r.Pattern.ToString()).ToArray();
            return Refused(new(FusionErrorKind.NoRule,
                $"no fusion rule for ({string.Join(", ", kinds)}) (PyTorch: did not find fuser method); " +
                (near.Length == 0 ? $"no rule starts with {kinds[0]}" : $"rules starting with {kinds[0]}: {string.Join(", ", near)}"),
                "fuse a sequence some rule matches, or add a rule for this pattern (C#: FuseOptions.AdditionalRules or " +
                "AdditionalFuserMethodMapping; F#: Fuse.modulesWith (Rules.defaults |> Rules.add rule))", null, null), modules);
        }
        if (modules.Any(m => m.Training != modules[0].Training))
            return Refused(new(FusionErrorKind.MixedModes,
                "its modules must be in the same mode (train or eval), but " +
                string.Join(", ", paths.Select((p, k) => $"'{p}' is in {(modules[k].Training ? "training" : "eval")} mode")),
                "call Train() or Eval() on the whole model before fusing (F#: Model.train or Model.eval)", rule?.Name, null), modules);
        var lost = FusionPlan.LostHooks(paths, modules);
        if (lost.Count > 0)
            return Refused(new(FusionErrorKind.HookNotKept,
                $"{string.Join("; ", lost)} cannot be kept: after fusion the module at '{paths[0]}' computes the whole group and the " +
                "other positions are Identity, so only the first module's pre-hooks and the last module's forward hooks can move to it " +
                "(PyTorch drops the others silently)",
                $"remove {(lost.Count == 1 ? "that hook" : "those hooks")} before fusing and register the equivalent on the fused module at " +
                $"'{paths[0]}' afterwards, or leave the hooked module out of the group", null, null), modules);
        var bare = modules.Select(m => m.PreHooks.Length == 0 && m.Hooks.Length == 0
            ? m
            : m.WithHooks(ImmutableArray<ForwardPreHook>.Empty, ImmutableArray<ForwardHook>.Empty)).ToArray();
        if (rule?.FirstViolation(new FusionMatch(index, [.. paths], bare, isQat)) is { } v)
            return new(new(v.Guard.Kind, $"rule '{rule.Name}' guard '{v.Guard.Name}' failed: {v.Problem}", v.Guard.Remedy, rule.Name, v.Guard.Name), rule, bare);
        return new(null, rule, bare);
    }

    private static Result Refused(Refusal refusal, Module[] modules) => new(refusal, null, modules);
}
