using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Analysis;

/// <summary>How a module is reached at a <see cref="CallSite"/>.</summary>
public enum CallSiteKind
{
    /// <summary>The model itself, called by its user.</summary>
    Root,
    /// <summary>A <c>call_module</c> node of a container's forward graph.</summary>
    GraphNode,
    /// <summary>A position of a <c>Sequential</c> (or fused group) that runs: each child feeds the next.</summary>
    ChainPosition,
}

/// <summary>What reads the output of a call.</summary>
public enum ConsumerKind
{
    /// <summary>A call of the module at <see cref="Consumer.ModulePath"/>.</summary>
    Module,
    /// <summary>A graph function or method node (<c>add</c>, <c>flatten</c>, ...).</summary>
    Operation,
    /// <summary>The model's own output.</summary>
    ModelOutput,
}

/// <summary>A reader of a call's output: a module call, a graph operation, or the model output.</summary>
/// <param name="Kind">What kind of reader.</param>
/// <param name="ModulePath">The called module's dotted path from the model root, for <see cref="ConsumerKind.Module"/>; else null.</param>
/// <param name="Description">The reader as a message names it.</param>
public sealed record Consumer(ConsumerKind Kind, string? ModulePath, string Description)
{
    /// <inheritdoc />
    public override string ToString() => Description;
}

/// <summary>
/// One static place where a module runs: a graph node or a chain position (the same place however often its container runs),
/// with every reader of the value it produces.
/// </summary>
/// <param name="Kind">Graph node, chain position, or the root.</param>
/// <param name="Container">Dotted path of the container whose graph or chain holds the call (<c>""</c> for the root).</param>
/// <param name="Location">The graph node's name, or the child's name in the chain.</param>
/// <param name="Consumers">The readers of the output, resolved through container boundaries (the last position of a chain
/// and a graph's output are read by whatever reads the container's own output).</param>
public sealed record CallSite(CallSiteKind Kind, string Container, string Location, ImmutableArray<Consumer> Consumers)
{
    /// <summary>The call site as messages name it: <c>graph node 'relu_1' of the root</c>.</summary>
    public override string ToString() => Kind switch
    {
        CallSiteKind.Root => "the model's caller",
        CallSiteKind.GraphNode => $"graph node '{Location}' of {Dataflow.Name(Container)}",
        _ => $"position '{Location}' in the chain of {Dataflow.Name(Container)}",
    };
}

/// <summary>
/// Who calls which module and who reads each call's output, for a whole model. Containers are read as they run: a
/// <see cref="UserModule"/> with a <see cref="UserModule.Forward"/> graph by its <c>call_module</c> nodes (targets relative to
/// it), a <see cref="Sequential"/> or <see cref="FusedModule"/> that runs as a chain (each position feeding the next), and
/// the modules they call recursively. A <see cref="UserModule"/> without a graph, or an <see cref="OpaqueModule"/>, that runs as a whole is opaque: nothing
/// below it is known (<see cref="IsKnown"/> is false there). A Sequential that never runs as a whole (its children called
/// one by one from a graph, as torch.fx traces it) is only a namespace.
/// </summary>
/// <remarks>Pure: the analysis reads the model and keeps no reference to anything the caller could change.</remarks>
public sealed class Dataflow
{
    private readonly Dictionary<string, ImmutableArray<CallSite>> _sites;
    private readonly HashSet<string> _opaque;
    private readonly ImmutableArray<string> _order;
    private readonly HashSet<string> _identities;

    private Dataflow(Dictionary<string, ImmutableArray<CallSite>> sites, HashSet<string> opaque, ImmutableArray<string> order, HashSet<string> identities)
    {
        _sites = sites; _opaque = opaque; _order = order; _identities = identities;
    }

    /// <summary>The module paths that run, in the order they first run (a container before the modules it calls).</summary>
    public ImmutableArray<string> ExecutionOrder => _order;

    /// <summary>The paths of graph-less user containers that run as a whole: their insides are not known.</summary>
    public IEnumerable<string> OpaqueContainers => _opaque.Order(StringComparer.Ordinal);

    /// <summary>Analyses <paramref name="model"/>.</summary>
    public static Dataflow Of(Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var b = new Builder();
        b.Visit("", model, new RawSite(CallSiteKind.Root, "", "", [RawConsumer.ModelOutput]));
        return b.Finish();
    }

    /// <summary>The call sites of the module at <paramref name="path"/>; empty when it never runs or is not <see cref="IsKnown"/>.</summary>
    public IReadOnlyList<CallSite> CallSites(string path)
        => _sites.TryGetValue(path ?? throw new ArgumentNullException(nameof(path)), out var s) ? s : ImmutableArray<CallSite>.Empty;

    /// <summary>
    /// Whether every call of the module at <paramref name="path"/> is visible: false when it lies inside a graph-less user container
    /// that runs as a whole (which may call it any number of times in any way).
    /// </summary>
    public bool IsKnown(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) return true;
        // The root and every proper prefix of the path, looked up as spans: fusion asks this for every member of every group.
        var opaque = _opaque.GetAlternateLookup<ReadOnlySpan<char>>();
        if (opaque.Contains("")) return false;
        for (var end = path.IndexOf('.'); end >= 0; end = path.IndexOf('.', end + 1))
            if (opaque.Contains(path.AsSpan(0, end))) return false;
        return true;
    }

    /// <summary>
    /// The module that alone reads the output of the module at <paramref name="path"/>, when the pair can be fused safely:
    /// <paramref name="path"/> has exactly one call site, that call's output has exactly one reader, the reader is a call of another
    /// module, and that module has exactly one call site. Null otherwise (or when either is not known).
    /// </summary>
    /// <remarks>An <see cref="Identity"/> run from one place (such as a position an earlier fusion emptied) passes its input on
    /// unchanged, so it is looked through: its readers count as the readers.</remarks>
    public string? SafeSuccessor(string path)
    {
        if (!IsKnown(path)) return null;
        var sites = CallSites(path);
        if (sites.Count != 1) return null;
        var readers = Readers(sites[0], null);
        if (readers.Length != 1) return null;
        var c = readers[0];
        if (c.Kind != ConsumerKind.Module || c.ModulePath is not { } next || !IsKnown(next)) return null;
        return CallSites(next).Count == 1 ? next : null;
    }

    /// <summary>
    /// Why fusing <paramref name="group"/> would change what the model computes, or null when it is safe — or when the dataflow
    /// of some member is not known (then nothing can be proven, and the group is accepted as PyTorch accepts it). Safe means:
    /// every member but the last has exactly one call site whose only reader is the next member, and every member has exactly one
    /// call site (a module run from two places must never become an <see cref="Identity"/>, nor compute the whole group twice).
    /// A group none of whose members runs is safe too (nothing flows through it). An <see cref="Identity"/> outside the group
    /// run from one place is looked through (it passes its input on unchanged).
    /// </summary>
    public string? GroupViolation(IReadOnlyList<string> group)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (group.Count < 2 || group.Any(p => !IsKnown(p))) return null;
        // A group none of whose members runs (torchvision's auxiliary classifiers, which an eval-mode forward skips and
        // whose fuse_model() fuses them all the same) computes nothing here, fused or not.
        if (group.All(p => CallSites(p).Count == 0)) return null;
        var problems = new List<string>();
        for (var k = 0; k < group.Count; k++)
        {
            var p = group[k];
            var sites = CallSites(p);
            if (sites.Count == 0)
            {
                problems.Add($"'{p}' never runs, so no value flows through it");
                continue;
            }
            if (sites.Count > 1)
            {
                problems.Add($"'{p}' is called from {sites.Count} places ({JoinAnd(sites.Select(s => s.ToString()))}); after fusion " +
                             (k == 0 ? "each of them would compute the whole group" : "every one of them would get an Identity"));
                continue;
            }
            if (k == group.Count - 1) continue;
            var readers = Readers(sites[0], group);
            var next = group[k + 1];
            if (readers.Length == 1 && readers[0].Kind == ConsumerKind.Module && readers[0].ModulePath == next) continue;
            var others = readers.Where(r => r.ModulePath != next).Select(r => r.Description).ToArray();
            problems.Add(readers.Length == 0
                ? $"the output of '{p}' ({sites[0]}) is read by nothing, not by the next member '{next}'"
                : readers.Any(r => r.ModulePath == next)
                    ? $"the output of '{p}' ({sites[0]}) is read by '{next}' but also by {JoinAnd(others)}, which would then see the fused result instead"
                    : $"the output of '{p}' ({sites[0]}) is read by {JoinAnd(others)}, not by the next member '{next}'");
        }
        return problems.Count == 0 ? null : string.Join("; ", problems);
    }

    /// <summary>
    /// Whether this analysis may be stale for <paramref name="group"/> after the modules at <paramref name="rewritten"/> were
    /// replaced: a member is at, inside or above a rewritten path, or a reader of a member is inside or above one or became an
    /// <see cref="Identity"/> (<paramref name="newIdentities"/>), which the analysis looks through. A reader replaced by a
    /// fused module at the same path reads as before. Fusion never edits a graph, so call sites elsewhere are unchanged.
    /// </summary>
    internal bool Touches(IReadOnlyList<string> group, PathSet rewritten, IReadOnlySet<string> newIdentities)
    {
        if (rewritten.Count == 0) return false;
        foreach (var p in group)
        {
            if (rewritten.Contains(p) || rewritten.Nests(p)) return true;
            foreach (var site in CallSites(p))
                if (Readers(site, group).Any(r => r.ModulePath is { } m && (newIdentities.Contains(m) || rewritten.Nests(m)))) return true;
        }
        return false;
    }

    /// <summary>The readers of a call, looking through each <see cref="Identity"/> run from one place that is not in
    /// <paramref name="members"/>.</summary>
    private ImmutableArray<Consumer> Readers(CallSite site, IReadOnlyList<string>? members)
    {
        var result = new List<Consumer>();
        void Add(IEnumerable<Consumer> readers)
        {
            foreach (var r in readers)
            {
                if (r is { Kind: ConsumerKind.Module, ModulePath: { } p } && _identities.Contains(p) && members?.Contains(p) != true
                    && CallSites(p) is { Count: 1 } through)
                    Add(through[0].Consumers);   // the dataflow is acyclic, so this ends
                else if (!result.Contains(r))
                    result.Add(r);
            }
        }
        Add(site.Consumers);
        return [.. result];
    }

    /// <summary>"the root" or <c>'layer1.0'</c>.</summary>
    internal static string Name(string container) => container.Length == 0 ? "the root" : $"'{container}'";

    private static string JoinAnd(IEnumerable<string> items)
    {
        var a = items.ToArray();
        return a.Length <= 1 ? string.Join("", a) : string.Join(", ", a.Take(a.Length - 1)) + " and " + a[^1];
    }


    /// <summary>A reader before resolution: a module call, an operation, the output of a container, or the model output.</summary>
    private sealed record RawConsumer(ConsumerKind Kind, string? ModulePath, string Description, string? OutputOf)
    {
        public static readonly RawConsumer ModelOutput = new(ConsumerKind.ModelOutput, null, "the model's output", null);
        public static RawConsumer Module(string path) => new(ConsumerKind.Module, path, $"'{path}'", null);
        public static RawConsumer ContainerOutput(string container) => new(ConsumerKind.ModelOutput, null, "", container);
    }

    private sealed record RawSite(CallSiteKind Kind, string Container, string Location, ImmutableArray<RawConsumer> Consumers);

    private sealed class Builder
    {
        private readonly Dictionary<string, List<RawSite>> _raw = new(StringComparer.Ordinal);
        private readonly HashSet<string> _opaque = new(StringComparer.Ordinal);
        private readonly HashSet<string> _identities = new(StringComparer.Ordinal);
        private readonly List<string> _order = [];
        private readonly Dictionary<string, ImmutableArray<Consumer>> _resolved = new(StringComparer.Ordinal);

        public void Visit(string path, Module module, RawSite site)
        {
            if (!_raw.TryGetValue(path, out var list))
            {
                _raw[path] = list = [];
                _order.Add(path);
            }
            // A chain that runs twice holds each position once: the place is the same.
            if (list.Any(s => s.Kind == site.Kind && s.Container == site.Container && s.Location == site.Location)) return;
            list.Add(site);
            if (list.Count > 1) return;   // the insides were read at the first call
            switch (module)
            {
                case Identity:
                    _identities.Add(path);
                    break;
                case Sequential or FusedModule:
                {
                    // Each child's path is joined once: as the reader of the one before it, then as the one visited.
                    var childPath = module.Children.Count > 0 ? ModulePath.Join(path, module.Children[0].Name) : "";
                    for (var i = 0; i < module.Children.Count; i++)
                    {
                        var c = module.Children[i];
                        var nextPath = i + 1 < module.Children.Count ? ModulePath.Join(path, module.Children[i + 1].Name) : null;
                        var next = nextPath is null ? RawConsumer.ContainerOutput(path) : RawConsumer.Module(nextPath);
                        Visit(childPath, c.Module, new RawSite(CallSiteKind.ChainPosition, path, c.Name, [next]));
                        childPath = nextPath!;
                    }
                    break;
                }
                case UserModule { Forward: { } graph }:
                    foreach (var node in graph.Nodes.Where(n => n.Op == NodeOp.CallModule))
                    {
                        var readers = graph.Consumers(node.Name).Select(r => Reader(path, r)).ToImmutableArray();
                        var target = ModulePath.Join(path, node.Target!);
                        Visit(target, ModulePath.Get(module, node.Target!), new RawSite(CallSiteKind.GraphNode, path, node.Name, readers));
                    }
                    break;
                case UserModule { Children.Count: > 0 } or OpaqueModule { Children.Count: > 0 }:
                    _opaque.Add(path);
                    break;
            }
        }

        private static RawConsumer Reader(string container, GraphNode node) => node.Op switch
        {
            NodeOp.CallModule => RawConsumer.Module(ModulePath.Join(container, node.Target!)),
            NodeOp.Output => RawConsumer.ContainerOutput(container),
            _ => new RawConsumer(ConsumerKind.Operation, null,
                $"{(node.Op == NodeOp.CallMethod ? "method" : "function")} '{node.Target}' (graph node '{node.Name}' of {Name(container)})", null),
        };

        public Dataflow Finish()
        {
            var sites = new Dictionary<string, ImmutableArray<CallSite>>(StringComparer.Ordinal);
            foreach (var (path, raw) in _raw)
            {
                // Inside an opaque container nothing is known; its calls seen from a graph above are not all the calls.
                sites[path] = raw.Select(s => new CallSite(s.Kind, s.Container, s.Location, Resolve(s.Consumers))).ToImmutableArray();
            }
            return new Dataflow(sites, _opaque, [.. _order], _identities);
        }

        /// <summary>Replaces "the output of container C" by whatever reads C's calls, up to the model output.</summary>
        private ImmutableArray<Consumer> Resolve(ImmutableArray<RawConsumer> raw)
        {
            var result = ImmutableArray.CreateBuilder<Consumer>();
            foreach (var r in raw)
            {
                if (r.OutputOf is null)
                {
                    result.Add(new Consumer(r.Kind, r.ModulePath, r.Description));
                    continue;
                }
                if (r.OutputOf.Length == 0)
                {
                    result.Add(new Consumer(ConsumerKind.ModelOutput, null, "the model's output"));
                    continue;
                }
                if (!_resolved.TryGetValue(r.OutputOf, out var outer))
                {
                    // Containers nest strictly, so this recursion climbs towards the root and ends.
                    outer = _raw.TryGetValue(r.OutputOf, out var s) ? Resolve([.. s.SelectMany(x => x.Consumers)]) : [];
                    _resolved[r.OutputOf] = outer;
                }
                result.AddRange(outer);
            }
            // The same reader reached twice (a value read twice by one node) is one reader.
            return [.. result.Distinct()];
        }
    }
}
