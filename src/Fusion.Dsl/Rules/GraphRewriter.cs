using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Rules;

/// <summary>
/// Applies the <see cref="RuleSet.GraphRules"/> of a rule set to every forward graph that runs in a model (the root's, and
/// each user container's called as a whole), until no rule applies. Each application matches a rule's pattern at a node,
/// runs one check routine (the same one <see cref="Candidates"/> reports with), replaces the rule's module in the tree and
/// rewrites only that container's graph: every module and graph off the path to a change is shared with the input, which is
/// never changed, and a model with nothing to rewrite is returned itself.
/// </summary>
/// <remarks>
/// <para>The rewriter's own checks, before the rule's guards: every matched node but the root is read only inside the match
/// (<c>readers</c>); no matched module has hooks, which would see other values after the rewrite (<c>hooks</c>); the replaced
/// module runs from exactly one known place (<c>called-once</c>) and no <c>get_attr</c> reads its state (<c>state-read</c>);
/// and for a result that is a new call, placed where the root was, no in-place operation lies between the first matched node
/// and the root (<c>in-place-between</c>), since the matched modules then read their inputs later than before.</para>
/// <para>Rewriting goes in rounds: each takes the matches in the order of their first node in the graph, then of their rule
/// in the set (so <c>conv → add → relu</c> is taken whole before <c>conv → add</c>, and of two convolutions at a join the
/// earlier one), skipping a match that shares a node with one already taken; every rewrite removes at least one node, so
/// rewriting ends.</para>
/// </remarks>
public static class GraphRewriter
{
    /// <summary>Applies <paramref name="rules"/>' graph rules to <paramref name="model"/> until none applies.</summary>
    public static Module Apply(Module model, RuleSet rules) => Run(model, rules, null);

    /// <summary>The rewrites <see cref="Apply"/> performs, in the order it performs them.</summary>
    public static IReadOnlyList<GraphFusion> Find(Module model, RuleSet rules)
    {
        var log = new List<GraphFusion>();
        Run(model, rules, log);
        return log;
    }

    /// <summary>Every site of <paramref name="model"/> as it is where a graph rule's pattern matches, each with the first check
    /// that refuses it or none: why a residual add or a constant was left alone.</summary>
    public static IReadOnlyList<GraphCandidate> Candidates(Module model, RuleSet rules)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(rules);
        var context = new Context(model);
        var result = new List<GraphCandidate>();
        foreach (var path in context.Containers)
        {
            var container = (UserModule)(path.Length == 0 ? model : ModulePath.Get(model, path));
            foreach (var (rule, m) in Matches(container, path, rules))
            {
                var refusal = Check(rule, m, context);
                result.Add(new GraphCandidate(Site(rule, m), refusal?.Kind, refusal?.Check, refusal?.Problem));
            }
        }
        return result;
    }

    private static Module Run(Module model, RuleSet rules, List<GraphFusion>? log)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(rules);
        if (rules.GraphRules.Length == 0) return model;
        var context = new Context(model);
        var tree = model;
        foreach (var path in context.Containers)
        {
            // Re-read from the tree: an earlier container may have rewritten a module below this one.
            var container = (UserModule)(path.Length == 0 ? tree : ModulePath.Get(tree, path));
            var rewritten = RewriteContainer(container, path, rules, context, log);
            if (ReferenceEquals(rewritten, container)) continue;
            tree = path.Length == 0 ? rewritten : ModulePath.Replace(tree, path, rewritten);
        }
        return tree;
    }

    /// <summary>What the checks read of the model as given: which graphs run, who calls each module, which state a
    /// <c>get_attr</c> reads. Rewrites only remove nodes and replace a module at its own path by one called from the same
    /// place, so these stay true of every later state of the model.</summary>
    private sealed class Context
    {
        public Context(Module model)
        {
            Flow = Dataflow.Of(model);
            var flow = Flow;
            Containers = model.NamedModules()
                .Where(kv => kv.Value is UserModule { Forward: not null } && (kv.Key.Length == 0 || (flow.IsKnown(kv.Key) && flow.CallSites(kv.Key).Count > 0)))
                .Select(kv => kv.Key).Distinct(StringComparer.Ordinal).ToArray();
            AttributeReads = Containers
                .SelectMany(c => ((UserModule)(c.Length == 0 ? model : ModulePath.Get(model, c))).Forward!.Nodes
                    .Where(n => n.Op == NodeOp.GetAttr).Select(n => ModulePath.Join(c, n.Target!)))
                .ToHashSet(StringComparer.Ordinal);
        }

        public Dataflow Flow { get; }
        public string[] Containers { get; }
        public HashSet<string> AttributeReads { get; }
    }

    /// <summary>
    /// Rewrites one container's graph in rounds. A round finds every match (<see cref="Matches"/>, in order) on the graph as it
    /// is, takes each that passes the checks and shares no node with one taken before it, and applies them all in one pass
    /// over the graph; rounds repeat until one takes nothing (a fold can enable another: <c>conv → mul → add</c>). Finding all
    /// matches once per round, not once per rewrite, keeps a graph with thousands of joins linear in its size per round.
    /// </summary>
    private static UserModule RewriteContainer(UserModule container, string path, RuleSet rules, Context context, List<GraphFusion>? log)
    {
        var current = container;
        while (true)
        {
            var taken = new List<(GraphRule Rule, GraphMatch Match)>();
            var touched = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (rule, m) in Matches(current, path, rules))
            {
                if (m.Nodes.Any(n => touched.Contains(n.Name)) || Check(rule, m, context) is not null) continue;
                taken.Add((rule, m));
                touched.UnionWith(m.Nodes.Select(n => n.Name));
            }
            if (taken.Count == 0) return current;
            var modules = taken.Select(t => KeyValuePair.Create(t.Match.Node(t.Rule.Replaces).Target!,
                t.Rule.Applier(t.Match) ?? throw new InvalidOperationException($"graph rule '{t.Rule.Name}' returned no module"))).ToList();
            current = ((UserModule)ModulePath.ReplaceAll(current, modules)).WithForward(Rewrite(current.Forward!, taken));
            if (log is not null) log.AddRange(taken.Select(t => Site(t.Rule, t.Match)));
        }
    }

    /// <summary>Every structural match in <paramref name="container"/>'s graph, ordered by first node, then by rule.</summary>
    private static IEnumerable<(GraphRule Rule, GraphMatch Match)> Matches(UserModule container, string path, RuleSet rules)
    {
        var graph = container.Forward!;
        var byName = graph.Nodes.ToDictionary(n => n.Name, StringComparer.Ordinal);
        var index = graph.Nodes.Select((n, i) => (n.Name, i)).ToDictionary(t => t.Name, t => t.i, StringComparer.Ordinal);
        var found = new List<(int Rule, GraphRule, GraphMatch)>();
        for (var r = 0; r < rules.GraphRules.Length; r++)
            foreach (var node in graph.Nodes)
                foreach (var m in Match(rules.GraphRules[r].Pattern, container, path, node, byName, index))
                    found.Add((r, rules.GraphRules[r], m));
        return found.OrderBy(f => f.Item3.FirstIndex).ThenBy(f => f.Rule).Select(f => (f.Item2, f.Item3));
    }

    private static GraphFusion Site(GraphRule rule, GraphMatch m) => new(rule.Name, m.Container, m.Root.Name, m.ModulePathOf(rule.Replaces));

    // ---- checks -----------------------------------------------------------------------------------------------

    private sealed record Refusal(FusionErrorKind Kind, string Check, string Problem);

    /// <summary>The one check routine of a match: the rewriter's safety checks, then the rule's guards.</summary>
    private static Refusal? Check(GraphRule rule, GraphMatch m, Context context)
    {
        var graph = m.Graph;
        var inside = m.Nodes.Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var n in m.Nodes)
        {
            if (!ReferenceEquals(n, m.Root) && graph.Consumers(n.Name).FirstOrDefault(c => !inside.Contains(c.Name)) is { } outside)
                return new(FusionErrorKind.UnsafeDataflow, "readers",
                    $"the value of graph node '{n.Name}' is also read by '{outside.Name}', outside the {rule.Name} pattern");
            if (n.Op == NodeOp.CallModule && ModulePath.Get(m.Owner, n.Target!) is { } called && (called.PreHooks.Length > 0 || called.Hooks.Length > 0))
                return new(FusionErrorKind.HookNotKept, "hooks",
                    $"'{ModulePath.Join(m.Container, n.Target!)}' has hooks, which would see other values once graph node '{n.Name}' is rewritten");
        }
        var replaced = m.ModulePathOf(rule.Replaces);
        if (!context.Flow.IsKnown(replaced) || context.Flow.CallSites(replaced).Count != 1)
            return new(FusionErrorKind.UnsafeDataflow, "called-once",
                $"'{replaced}' runs from {context.Flow.CallSites(replaced).Count} places (or inside a container without a graph), so rewriting it would change its other calls");
        if (context.AttributeReads.FirstOrDefault(a => a.StartsWith(replaced + ".", StringComparison.Ordinal)) is { } read)
            return new(FusionErrorKind.UnsafeDataflow, "state-read", $"a get_attr reads '{read}', which the rewrite of '{replaced}' would change");
        if (rule.Result.IsCall)
        {
            for (var i = m.FirstIndex + 1; i < m.RootIndex; i++)
            {
                var n = graph.Nodes[i];
                if (!inside.Contains(n.Name) && Mutates(m.Owner, n))
                    return new(FusionErrorKind.UnsafeDataflow, "in-place-between",
                        $"graph node '{n.Name}' overwrites a value in place between '{m.Nodes[0].Name}' and '{m.Root.Name}', and the rewrite moves the matched modules' work to '{m.Root.Name}'");
            }
        }
        return rule.FirstViolation(m) is { } v ? new(v.Guard.Kind, v.Guard.Name, v.Problem) : null;
    }

    private static bool Mutates(UserModule owner, GraphNode n) => n.Op switch
    {
        NodeOp.CallModule => ModulePath.TryGet(owner, n.Target!, out var mod) && mod is Activation { Inplace: true } or Dropout { Inplace: true },
        NodeOp.CallFunction or NodeOp.CallMethod => GraphOps.IsInplace(n),
        _ => false,
    };

    // ---- matching ---------------------------------------------------------------------------------------------

    /// <summary>What a match has bound so far; copied before each alternative so a failed one leaves nothing behind.</summary>
    private sealed record Bindings(ImmutableDictionary<string, GraphNode> Nodes, ImmutableDictionary<string, GraphArg> Values, ImmutableList<GraphNode> Matched)
    {
        public static Bindings Empty { get; } = new(ImmutableDictionary.Create<string, GraphNode>(StringComparer.Ordinal),
            ImmutableDictionary.Create<string, GraphArg>(StringComparer.Ordinal), []);
    }

    /// <summary>Every match of <paramref name="pattern"/> with <paramref name="node"/> as its root (an Either or a commutative
    /// operation can match in several ways: <c>x + conv(x)</c> where x is itself a convolution's output).</summary>
    private static IEnumerable<GraphMatch> Match(GraphPattern pattern, UserModule container, string path, GraphNode node,
        Dictionary<string, GraphNode> byName, Dictionary<string, int> index)
    {
        foreach (var b in MatchNode(pattern, node, container, byName, Bindings.Empty))
        {
            // An input part must be a value computed outside the match (x + conv(x) binds x twice, which is fine; conv(x) +
            // conv(x)'s "residual" would be the matched node itself).
            var inside = b.Matched.Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
            if (b.Values.Values.OfType<RefArg>().Any(r => inside.Contains(r.Node))) continue;
            var ordered = b.Matched.OrderBy(n => index[n.Name]).ToImmutableArray();
            yield return new GraphMatch(path, container, node, b.Nodes, b.Values, ordered, index[ordered[0].Name], index[node.Name]);
        }
    }

    private static IEnumerable<Bindings> MatchNode(GraphPattern p, GraphNode node, UserModule owner, Dictionary<string, GraphNode> byName, Bindings b)
    {
        switch (p.Kind)
        {
            case GraphPatternKind.Either:
                return p.Parts.SelectMany(alt => MatchNode(alt, node, owner, byName, b));
            case GraphPatternKind.Module:
            {
                if (node.Op != NodeOp.CallModule || node.Kwargs.Length != 0 || node.Args.Length != p.Parts.Length
                    || !ModulePath.TryGet(owner, node.Target!, out var module) || !p.Kinds.Contains(RuleSet.KindOf(module))
                    || Bind(p, node, b) is not { } bound)
                    return [];
                return MatchOperands(p.Parts, [.. node.Args], owner, byName, bound);
            }
            case GraphPatternKind.Operation:
            {
                if (node.Op is not (NodeOp.CallFunction or NodeOp.CallMethod) || GraphOps.Of(node) is not { } op || op.Name != p.Operation
                    || op.Parameters.Length < p.Parts.Length)
                    return [];
                OpCall call;
                try { call = op.Bind(node, a => a); }
                catch (GraphCallException) { return []; }
                // The leading parameters are the operands; any other parameter must be left at its default (an alpha or a
                // rounding mode changes what the operation computes), except the in-place flag.
                for (var i = p.Parts.Length; i < op.Parameters.Length; i++)
                    if (call.Has(op.Parameters[i].Name) && op.Parameters[i].Name != op.InplaceFlag) return [];
                var operands = new GraphArg[p.Parts.Length];
                for (var i = 0; i < operands.Length; i++)
                    if (call.Value(op.Parameters[i].Name) is GraphArg a) operands[i] = a;
                    else return [];
                if (Bind(p, node, b) is not { } bound) return [];
                var matches = MatchOperands(p.Parts, operands, owner, byName, bound);
                return p.Commutative ? matches.Concat(MatchOperands(p.Parts, [operands[1], operands[0]], owner, byName, bound)) : matches;
            }
            default:
                return [];
        }
    }

    private static IEnumerable<Bindings> MatchOperands(ImmutableArray<GraphPattern> parts, GraphArg[] args, UserModule owner, Dictionary<string, GraphNode> byName, Bindings b)
    {
        IEnumerable<Bindings> current = [b];
        for (var i = 0; i < parts.Length; i++)
        {
            var (part, arg) = (parts[i], args[i]);
            current = current.SelectMany(c => MatchArg(part, arg, owner, byName, c));
        }
        return current;
    }

    private static IEnumerable<Bindings> MatchArg(GraphPattern p, GraphArg arg, UserModule owner, Dictionary<string, GraphNode> byName, Bindings b)
    {
        switch (p.Kind)
        {
            case GraphPatternKind.Input:
                return arg is RefArg r && byName.TryGetValue(r.Node, out var n) && n.Op != NodeOp.Output && BindValue(p.Name!, arg, b) is { } v ? [v] : [];
            case GraphPatternKind.Constant:
                return (arg is ConstArg { Value: long or double } || arg is RefArg c && byName.TryGetValue(c.Node, out var attr) && attr.Op == NodeOp.GetAttr)
                       && BindValue(p.Name!, arg, b) is { } k
                    ? [k]
                    : [];
            case GraphPatternKind.Either:
                return p.Parts.SelectMany(alt => MatchArg(alt, arg, owner, byName, b));
            default:
            {
                if (arg is not RefArg reference || !byName.TryGetValue(reference.Node, out var node)) return [];
                // Calls of Identity without hooks compute nothing: look through them, and let the match remove them.
                while (node.Op == NodeOp.CallModule && node.Args.Length == 1 && node.Kwargs.Length == 0 && node.Args[0] is RefArg inner
                       && ModulePath.TryGet(owner, node.Target!, out var m) && m is Identity && m.PreHooks.Length == 0 && m.Hooks.Length == 0
                       && byName.TryGetValue(inner.Node, out var source))
                {
                    b = b with { Matched = b.Matched.Add(node) };
                    node = source;
                }
                return MatchNode(p, node, owner, byName, b);
            }
        }
    }

    private static Bindings? Bind(GraphPattern p, GraphNode node, Bindings b)
    {
        if (b.Nodes.TryGetValue(p.Name!, out var existing)) return ReferenceEquals(existing, node) ? b : null;
        if (b.Matched.Contains(node)) return null;
        return b with { Nodes = b.Nodes.Add(p.Name!, node), Matched = b.Matched.Add(node) };
    }

    private static Bindings? BindValue(string name, GraphArg arg, Bindings b)
    {
        if (b.Values.TryGetValue(name, out var existing)) return existing.Equals(arg) ? b : null;
        return b with { Values = b.Values.Add(name, arg) };
    }

    // ---- rewriting --------------------------------------------------------------------------------------------

    /// <summary>The graph after the <paramref name="taken"/> rewrites (they share no node): each root replaced by its result,
    /// the other matched nodes removed (but a reused one), and a <c>get_attr</c> only removed nodes read removed with them.</summary>
    private static Graph Rewrite(Graph graph, IReadOnlyList<(GraphRule Rule, GraphMatch Match)> taken)
    {
        var removed = new HashSet<string>(StringComparer.Ordinal);
        var calls = new Dictionary<string, GraphNode>(StringComparer.Ordinal);
        var reused = new Dictionary<string, string>(StringComparer.Ordinal);
        var passed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (rule, m) in taken)
        {
            var kept = rule.Result.IsCall ? null : m.Node(rule.Replaces).Name;
            foreach (var n in m.Nodes)
                if (n.Name != kept) removed.Add(n.Name);
            if (rule.Result.Arguments is { } args)
            {
                calls[m.Root.Name] = new GraphNode(NodeOp.CallModule, m.Root.Name, m.Node(rule.Replaces).Target, args.Select(m.Value));
                passed.UnionWith(args.SelectMany(a => m.Value(a).References));
            }
            else reused[m.Root.Name] = kept!;
        }
        foreach (var n in graph.Nodes)
            if (n.Op == NodeOp.GetAttr && !passed.Contains(n.Name) && graph.Consumers(n.Name) is { Length: > 0 } readers && readers.All(r => removed.Contains(r.Name)))
                removed.Add(n.Name);
        var nodes = new List<GraphNode>(graph.Nodes.Length);
        foreach (var n in graph.Nodes)
        {
            if (calls.TryGetValue(n.Name, out var call)) nodes.Add(call);
            else if (removed.Contains(n.Name)) continue;
            else nodes.Add(reused.Count > 0 && n.Inputs.Any(reused.ContainsKey)
                ? new GraphNode(n.Op, n.Name, n.Target, n.Args.Select(a => Substitute(a, reused)),
                    n.Kwargs.Select(kv => KeyValuePair.Create(kv.Key, Substitute(kv.Value, reused))))
                : n);
        }
        return new Graph(nodes);
    }

    private static GraphArg Substitute(GraphArg arg, Dictionary<string, string> reused) => arg switch
    {
        RefArg r when reused.TryGetValue(r.Node, out var to) => GraphArg.Ref(to),
        ListArg l => GraphArg.List(l.Items.Select(i => Substitute(i, reused)).ToArray()),
        _ => arg,
    };
}
