using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// What to fuse and how: the groups of dotted names (PyTorch's <c>modules_to_fuse</c> as a list of lists), the form
/// (<see cref="IsQat"/>), and what computes each group's result — the <see cref="Rules"/>, or a custom <see cref="Fuser"/>.
/// A plan is a value; <see cref="Apply"/> rewrites a model without changing it.
/// </summary>
public sealed class FusionPlan
{
    private FusionPlan(ImmutableArray<ImmutableArray<string>> groups, bool isQat, RuleSet rules,
        Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>? fuser, bool allowUnsafeDataflow)
    {
        Groups = groups; IsQat = isQat; Rules = rules; Fuser = fuser; AllowUnsafeDataflow = allowUnsafeDataflow;
    }

    /// <summary>The plan with no groups: applying it returns the model itself.</summary>
    public static FusionPlan Empty { get; } = new([], false, RuleSet.Default, null, false);

    /// <summary>The groups of dotted names, applied in order; a later group sees the results of the earlier ones.</summary>
    public ImmutableArray<ImmutableArray<string>> Groups { get; }

    /// <summary>True for <c>fuse_modules_qat</c> (BatchNorm kept for training), false for <c>fuse_modules</c> (BatchNorm folded).</summary>
    public bool IsQat { get; }

    /// <summary>The rules that compute each group's result when there is no <see cref="Fuser"/>.</summary>
    public RuleSet Rules { get; }

    /// <summary>
    /// A custom fuser (PyTorch's <c>fuser_func</c>): <c>(modules, isQat) → same number of modules</c> that replace the group
    /// position by position; when set it is used instead of <see cref="Rules"/>. Null for the rule-based fuser.
    /// </summary>
    public Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>? Fuser { get; }

    /// <summary>
    /// False (the default): a group is fused only when the model's <see cref="Dataflow"/> shows that each member but the last is read
    /// by the next member alone and no member runs from two places; otherwise it is refused with
    /// <see cref="FusionErrorKind.UnsafeDataflow"/>. True: PyTorch's behaviour, which fuses such groups and silently changes what the
    /// model computes. Groups whose dataflow is not known (inside a user container without a graph) are accepted either way.
    /// </summary>
    public bool AllowUnsafeDataflow { get; }

    /// <summary>Creates a plan, checking the shape of <paramref name="groups"/> (not yet the model).</summary>
    /// <param name="groups">The groups of dotted names; none is allowed (the plan then does nothing).</param>
    /// <param name="isQat">Whether QAT forms are produced.</param>
    /// <param name="rules">The rules; <see cref="RuleSet.Default"/> when null.</param>
    /// <param name="fuser">A custom fuser used instead of the rules, or null.</param>
    /// <param name="allowUnsafeDataflow">Skip the dataflow check (see <see cref="AllowUnsafeDataflow"/>).</param>
    /// <exception cref="FusionException"><see cref="FusionErrorKind.InvalidGroups"/>: a group is null or empty, or a name in it is
    /// null, empty, has an empty segment, repeats, or lies inside another name of the same group.</exception>
    public static FusionPlan Create(IEnumerable<IEnumerable<string>> groups, bool isQat, RuleSet? rules = null,
        Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>? fuser = null, bool allowUnsafeDataflow = false)
    {
        ArgumentNullException.ThrowIfNull(groups);
        var b = ImmutableArray.CreateBuilder<ImmutableArray<string>>();
        var index = 0;
        foreach (var g in groups)
        {
            b.Add(CheckGroup(index, g));
            index++;
        }
        return new FusionPlan(b.ToImmutable(), isQat, rules ?? RuleSet.Default, fuser, allowUnsafeDataflow);
    }

    /// <summary>
    /// Fuses every group in order and returns the new model. Per group: resolve every path, check modes, hooks, the rule and its
    /// guards, compute the result, check the dataflow (unless <see cref="AllowUnsafeDataflow"/>), and only then replace the group's positions — the first with the fused module (carrying the first
    /// module's pre-hooks and the last module's forward hooks), the others with <see cref="Identity"/> in the first module's mode.
    /// Subtrees outside the groups are shared with <paramref name="model"/>, which is never changed; a plan that changes nothing
    /// returns <paramref name="model"/> itself. On any error a <see cref="FusionException"/> is thrown and no model is produced.
    /// </summary>
    /// <exception cref="FusionException">A group cannot be fused; its <see cref="FusionException.Kind"/> says why.</exception>
    /// <remarks>An exception thrown by a custom <see cref="Fuser"/>, rule applier or guard propagates unchanged (still producing no model).</remarks>
    public Module Apply(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        // Replacements stay pending until the end, so each module on a changed path is rebuilt once, not once per group.
        var tree = new TreeEdits(model);
        var flow = new FlowCache();
        // Which earlier group fused each path, so a refusal can say why a member is an Identity now.
        var fusedBy = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < Groups.Length; i++)
        {
            FuseGroup(tree, i, Groups[i], flow, fusedBy);
            foreach (var p in Groups[i]) fusedBy.TryAdd(p, i);
        }
        return tree.Build();
    }

    /// <summary>
    /// The dataflow of the tree being rewritten, rebuilt only when a group comes near a path an earlier group rewrote.
    /// Fusion replaces modules in place and never edits a graph, so the call sites and readers of modules away from the
    /// rewritten paths are the same as before; analysing the whole model once per group made fusing resnet50 allocate
    /// five times its folded weights.
    /// </summary>
    private sealed class FlowCache
    {
        private readonly PathSet _rewritten = new();
        private readonly HashSet<string> _newIdentities = new(StringComparer.Ordinal);
        private Dataflow? _flow;

        public Dataflow For(TreeEdits tree, IReadOnlyList<string> group)
        {
            if (_flow is null || _flow.Touches(group, _rewritten, _newIdentities))
            {
                _flow = Dataflow.Of(tree.Build());
                _rewritten.Clear();
                _newIdentities.Clear();
            }
            return _flow;
        }

        public void Rewrote(IReadOnlyList<string> paths, IReadOnlyList<Module> replacements)
        {
            foreach (var p in paths) _rewritten.Add(p);
            for (var k = 0; k < paths.Count; k++)
                if (replacements[k] is Identity) _newIdentities.Add(paths[k]);
        }
    }

    private void FuseGroup(TreeEdits tree, int index, ImmutableArray<string> paths, FlowCache flow, IReadOnlyDictionary<string, int> fusedBy)
    {
        var modules = Resolve(tree, index, paths);
        var kinds = modules.Select(RuleSet.KindOf).ToArray();
        // A member an earlier group took is that group's result now (its fused module or an Identity): say so.
        var taken = paths.Where(fusedBy.ContainsKey)
            .Select(p => $"'{p}' was fused by group {fusedBy[p]} {FusionException.FormatPaths(Groups[fusedBy[p]])} and is {Article(tree.Get(p).TypeName)} now")
            .ToArray();
        FusionException Fail(FusionErrorKind kind, string problem, string remedy, string? rule = null, string? guard = null)
            => FusionException.Create(kind, index, paths, kinds, taken.Length == 0 ? problem : $"{problem} ({string.Join("; ", taken)})",
                taken.Length == 0 ? remedy : "list each module in one group only; " + remedy, rule, guard);

        var check = GroupChecks.Run(Fuser is null ? Rules : null, index, paths, modules, IsQat);
        if (check.Refusal is { } refusal) throw Fail(refusal.Kind, refusal.Problem, refusal.Remedy, refusal.Rule, refusal.Guard);
        var rule = check.Rule;
        var fused = rule is not null ? ApplyRule(rule, check.Bare, Fail) : ApplyFuser(paths, check.Bare, Fail);
        // Checked last so that every refusal PyTorch itself makes is reported as PyTorch's kind.
        if (!AllowUnsafeDataflow && paths.Length > 1 && flow.For(tree, paths).GroupViolation(paths) is { } unsafeFlow)
            throw Fail(FusionErrorKind.UnsafeDataflow,
                $"fusing would change what the model computes: {unsafeFlow}",
                "fuse only modules that run one after another with nothing else reading the values between them (give a reused " +
                "module its own copy per call site), or set FuseOptions.AllowUnsafeDataflow to force PyTorch's behaviour (from F# too: " +
                "Fuser.FuseModules(model, groups, FuseOptions(AllowUnsafeDataflow = true)))", rule?.Name, null);

        // Hooks move exactly once: the fused module keeps the first module's pre-hooks and the last module's forward hooks.
        var first = fused[0];
        if (modules[0].PreHooks.Length > 0 || modules[^1].Hooks.Length > 0)
            fused[0] = first.WithHooks(first.PreHooks.AddRange(modules[0].PreHooks), first.Hooks.AddRange(modules[^1].Hooks));

        for (var k = 0; k < paths.Length; k++)
            if (modules[k].Children.Count > 0) CheckGraphCalls(tree, paths[k], fused[k], Fail);
        for (var k = 0; k < paths.Length; k++) tree.Set(paths[k], fused[k]);
        flow.Rewrote(paths, fused);
    }

    /// <summary>
    /// Refuses a result that drops a submodule some container's graph calls: replacing a container (only a custom fuser or
    /// rule does that) must keep every path a graph above it reaches into. Leaves, the usual members, have nothing to check.
    /// </summary>
    private static void CheckGraphCalls(TreeEdits tree, string path, Module replacement,
        Func<FusionErrorKind, string, string, string?, string?, FusionException> fail)
    {
        var segs = ModulePath.Split(path);
        for (var i = 0; i < segs.Length; i++)
        {
            var ownerPath = string.Join('.', segs.Take(i));
            if (tree.Get(ownerPath) is not UserModule { Forward: { } graph } owner) continue;
            var below = string.Join('.', segs.Skip(i)) + ".";
            foreach (var call in graph.ModuleCalls)
                if (call.StartsWith(below, StringComparison.Ordinal) && !ModulePath.TryGet(replacement, call[below.Length..], out _))
                    throw fail(FusionErrorKind.FuserResult,
                        $"the result for '{path}' ({replacement.TypeName}) has no submodule '{call[below.Length..]}', which the forward " +
                        $"graph of {Dataflow.Name(ownerPath)} ({owner.TypeName}) calls as '{call}'",
                        "keep the submodules a graph calls in the result, or fuse the called modules themselves", null, null);
        }
    }

    private static string Article(string typeName) => ("AEIOU".Contains(typeName[0]) ? "an " : "a ") + typeName;

    private static Module[] Resolve(TreeEdits tree, int index, ImmutableArray<string> paths)
    {
        var modules = new Module[paths.Length];
        for (var k = 0; k < paths.Length; k++)
        {
            try { modules[k] = tree.Get(paths[k]); }
            catch (ModulePathException e)
            {
                var found = modules.Take(k).Select(m => m.TypeName).ToArray();
                var parent = e.ParentPath.Length == 0 ? "the root" : $"'{e.ParentPath}'";
                var remedy = e.ExistingChildren.Count == 0
                    ? $"{parent} has no children; check the name"
                    : $"use one of the children of {parent}: {string.Join(", ", e.ExistingChildren)}";
                throw FusionException.Create(FusionErrorKind.MissingName, index, paths, found,
                    e.Message, remedy, inner: e);
            }
            // A fused module holds only leaf layers, named "0", "1", "2": a member inside one is its direct child, so the
            // parent of a path ending so is the one module to look at (not every ancestor of every member).
            var dot = paths[k].LastIndexOf('.');
            if (dot > 0 && paths[k].AsSpan(dot + 1) is "0" or "1" or "2" && tree.Get(paths[k][..dot]) is Layers.FusedModule f)
            {
                var parent = paths[k][..dot];
                throw FusionException.Create(FusionErrorKind.InsideFusedModule, index, paths, modules.Take(k + 1).Select(m => m.TypeName).ToArray(),
                    $"'{paths[k]}' lies inside '{parent}', a {f.TypeName} that fusion produced; its children are fixed by its type",
                    $"fuse the unfused model instead, or leave '{parent}' as it is", null);
            }
        }
        return modules;
    }

    /// <summary>The hooks of a group that fusion cannot keep: pre-hooks after the first position, forward hooks before the last.</summary>
    internal static List<string> LostHooks(IReadOnlyList<string> paths, IReadOnlyList<Module> modules)
    {
        var lost = new List<string>();
        for (var k = 0; k < modules.Count; k++)
        {
            if (modules[k].PreHooks.Length == 0 && modules[k].Hooks.Length == 0) continue;   // the usual case: say nothing
            var where = $"'{paths[k]}' ({modules[k].TypeName}, position {k} of {modules.Count})";
            if (k > 0)
                lost.AddRange(modules[k].PreHooks.Select(h => $"forward pre-hook '{h.Name}' on {where}"));
            if (k < modules.Count - 1)
                lost.AddRange(modules[k].Hooks.Select(h => $"forward hook '{h.Name}' on {where}"));
        }
        return lost;
    }

    private Module[] ApplyRule(FusionRule rule, Module[] modules, Func<FusionErrorKind, string, string, string?, string?, FusionException> fail)
    {
        var fused = rule.Applier(IsQat, modules)
            ?? throw fail(FusionErrorKind.FuserResult, $"rule '{rule.Name}' returned null instead of a module",
                "make the rule's applier return the fused module", rule.Name, null);
        var result = new Module[modules.Length];
        result[0] = fused;
        for (var k = 1; k < result.Length; k++) result[k] = Identity.Create(training: modules[0].Training);
        return result;
    }

    private Module[] ApplyFuser(ImmutableArray<string> paths, Module[] modules,
        Func<FusionErrorKind, string, string, string?, string?, FusionException> fail)
    {
        var result = Fuser!(modules, IsQat);
        const string remedy = "make the fuser function return one module per input module (Identity for the positions it absorbs)";
        if (result is null) throw fail(FusionErrorKind.FuserResult, "the custom fuser function returned null", remedy, null, null);
        if (result.Count != modules.Length)
            throw fail(FusionErrorKind.FuserResult,
                $"the custom fuser function returned {result.Count} module(s) for a group of {modules.Length}", remedy, null, null);
        for (var k = 0; k < result.Count; k++)
            if (result[k] is null)
                throw fail(FusionErrorKind.FuserResult, $"the custom fuser function returned null at position {k} ('{paths[k]}')", remedy, null, null);
        return [.. result];
    }

    private static ImmutableArray<string> CheckGroup(int index, IEnumerable<string>? group)
    {
        FusionException Invalid(string[] paths, string problem, string remedy)
            => FusionException.Create(FusionErrorKind.InvalidGroups, index, paths, [], problem, remedy);
        if (group is null) throw Invalid([], "the group is null", "give a list of dotted module names");
        var paths = group.ToArray();
        if (paths.Length == 0)
            throw Invalid(paths, "the group is empty", "give at least one dotted module name per group, or drop the empty group");
        for (var k = 0; k < paths.Length; k++)
        {
            var p = paths[k];
            if (string.IsNullOrEmpty(p))
                throw Invalid(paths.Select(x => x ?? "").ToArray(), $"name {k} is {(p is null ? "null" : "empty")}",
                    "give the dotted name of a submodule such as 'features.0' (the root itself cannot be fused)");
            if (p.Split('.').Any(s => s.Length == 0))
                throw Invalid(paths, $"'{p}' has an empty segment", "write dotted names without leading, trailing or doubled dots");
            for (var j = 0; j < k; j++)
            {
                if (paths[j] == p)
                    throw Invalid(paths, $"'{p}' appears twice", "name each module of a group once");
                var (outer, inner) = paths[j].Length < p.Length ? (paths[j], p) : (p, paths[j]);
                if (inner.StartsWith(outer + ".", StringComparison.Ordinal))
                    throw Invalid(paths, $"'{inner}' lies inside '{outer}'", "a group lists sibling-like modules run one after another, not a module and its child");
            }
        }
        return [.. paths];
    }
}
