using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl.Discovery;

/// <summary>
/// Finds the groups a rule set can fuse in a model: runs of modules where each feeds only the next (by <see cref="Dataflow"/>'s
/// <see cref="Dataflow.SafeSuccessor"/>, so every group passes the dataflow check), whose kinds a rule matches, in one mode, with
/// no hook that fusion would have to drop, and whose rule guards hold for the requested form.
/// </summary>
/// <remarks>
/// Matching is leftmost-longest along each run in execution order: at each module the longest fusable run starting there wins
/// (Conv+BN+ReLU over Conv+BN), then matching resumes after it. The result is ordered the way torchvision's <c>fuse_model()</c>
/// methods produce their lists: by the pre-order position (<c>named_modules()</c> order) of the innermost container holding the
/// whole group — the container whose <c>fuse_model</c> would name it — then by execution order.
/// </remarks>
internal static class GroupDiscovery
{
    public static IReadOnlyList<IReadOnlyList<string>> Find(Module model, RuleSet rules, bool isQat)
    {
        var flow = Dataflow.Of(model);
        var longest = rules.Count == 0 ? 0 : rules.Max(r => r.Pattern.Length);
        var used = new HashSet<string>(StringComparer.Ordinal);
        var found = new List<(string[] Group, int Executed)>();
        for (var e = 0; e < flow.ExecutionOrder.Length; e++)
        {
            var start = flow.ExecutionOrder[e];
            if (start.Length == 0 || used.Contains(start) || !flow.IsKnown(start) || flow.CallSites(start).Count != 1
                || InsideFused(model, start)) continue;
            var run = new List<string> { start };
            while (run.Count < longest && flow.SafeSuccessor(run[^1]) is { } next && !used.Contains(next) && !run.Contains(next)
                   && !InsideFused(model, next))
                run.Add(next);
            for (var length = run.Count; length >= 1; length--)
            {
                var group = run.Take(length).ToArray();
                if (!Fusable(model, group, found.Count, rules, isQat)) continue;
                found.Add((group, e));
                used.UnionWith(group);
                break;
            }
        }
        var preorder = model.NamedModules().Select((kv, i) => (kv.Key, i)).GroupBy(t => t.Key)
            .ToDictionary(g => g.Key, g => g.First().i, StringComparer.Ordinal);
        return found
            .OrderBy(f => preorder[InnermostContainer(f.Group)])
            .ThenBy(f => f.Executed)
            .Select(f => (IReadOnlyList<string>)Array.AsReadOnly(f.Group))
            .ToArray();
    }

    /// <summary>Whether fusing <paramref name="paths"/> would succeed: the plan's own checks (<see cref="GroupChecks"/>) find nothing.</summary>
    private static bool Fusable(Module model, string[] paths, int index, RuleSet rules, bool isQat)
        => GroupChecks.Run(rules, index, paths, [.. paths.Select(p => ModulePath.Get(model, p))], isQat).Refusal is null;

    /// <summary>Whether <paramref name="path"/> is a part of an already fused module, which is never fused again.</summary>
    private static bool InsideFused(Module model, string path)
    {
        var segments = ModulePath.Split(path);
        return segments.Length > 1 && ModulePath.Get(model, string.Join('.', segments[..^1])) is Layers.FusedModule;
    }

    /// <summary>The longest common parent path of the group's members (<c>""</c> for the root).</summary>
    private static string InnermostContainer(string[] group)
    {
        var parents = group.Select(p => ModulePath.Split(p)[..^1]).ToArray();
        var n = parents.Min(s => s.Length);
        var common = 0;
        while (common < n && parents.All(s => s[common] == parents[0][common])) common++;
        return string.Join('.', parents[0].Take(common));
    }
}
