using System.Globalization;
using System.Text;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Analysis;

/// <summary>
/// What fusion changed between a model and its fused form: the modules replaced (a fused group's result, or a layer whose weights
/// absorbed a BatchNorm), the modules turned into <c>Identity</c>, and the parameters and state entries folded away. Both trees
/// are walked together by path; a subtree shared by both (the same object, as fusion leaves untouched parts) is skipped at once.
/// </summary>
/// <remarks>
/// Fusion records no group membership in the result, so each <c>Identity</c> is credited to the nearest replaced module before it in
/// <c>named_modules()</c> order, which is where <c>fuse_modules</c> puts the group's head. An <c>Identity</c> with no replaced module
/// before it is listed in <see cref="Identities"/> only.
/// </remarks>
public sealed class ModelDiff
{
    private ModelDiff(IReadOnlyList<ReplacedModule> replaced, IReadOnlyList<KeyValuePair<string, string>> identities,
        long parametersBefore, long parametersAfter, IReadOnlyList<string> removed, IReadOnlyList<string> added)
    {
        Replaced = replaced; Identities = identities; ParametersBefore = parametersBefore; ParametersAfter = parametersAfter;
        RemovedState = removed; AddedState = added;
    }

    /// <summary>The replaced modules in <c>named_modules()</c> order, each with the <c>Identity</c> modules credited to it.</summary>
    public IReadOnlyList<ReplacedModule> Replaced { get; }

    /// <summary>Every module that became <c>Identity</c>: path and type name before.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Identities { get; }

    /// <summary>Parameter elements before (PyTorch's <c>sum(p.numel() for p in model.parameters())</c>).</summary>
    public long ParametersBefore { get; }

    /// <summary>Parameter elements after.</summary>
    public long ParametersAfter { get; }

    /// <summary>Parameter elements folded away: <see cref="ParametersBefore"/> minus <see cref="ParametersAfter"/>.</summary>
    public long ParametersFolded => ParametersBefore - ParametersAfter;

    /// <summary><c>state_dict</c> keys present before and gone after (a folded BatchNorm's weight, bias and statistics).</summary>
    public IReadOnlyList<string> RemovedState { get; }

    /// <summary><c>state_dict</c> keys present after only (a bias a fold created, or a key moved under a fused container's <c>0.</c>).</summary>
    public IReadOnlyList<string> AddedState { get; }

    /// <summary>Whether the two models are the same tree (nothing replaced, nothing turned into Identity, same state keys).</summary>
    public bool IsEmpty => Replaced.Count == 0 && Identities.Count == 0 && RemovedState.Count == 0 && AddedState.Count == 0;

    /// <summary>Compares <paramref name="before"/> with <paramref name="after"/> (normally its fused form); neither changes.</summary>
    public static ModelDiff Compare(Module before, Module after)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        var changes = new List<(string Path, Module Before, Module After)>();
        Walk(before, after, "", changes);
        var replaced = new List<(string Path, string Before, string After, List<KeyValuePair<string, string>> Ids)>();
        var identities = new List<KeyValuePair<string, string>>();
        foreach (var (path, b, a) in changes)
        {
            if (a is Identity && b is not Identity)
            {
                var id = new KeyValuePair<string, string>(path, b.TypeName);
                identities.Add(id);
                if (replaced.Count > 0) replaced[^1].Ids.Add(id);
            }
            else replaced.Add((path, b.TypeName, a.TypeName, []));
        }
        var beforeKeys = before.StateDict().Select(kv => kv.Key).ToList();
        var afterKeys = after.StateDict().Select(kv => kv.Key).ToList();
        var afterSet = afterKeys.ToHashSet(StringComparer.Ordinal);
        var beforeSet = beforeKeys.ToHashSet(StringComparer.Ordinal);
        return new ModelDiff(
            replaced.Select(r => new ReplacedModule(r.Path, r.Before, r.After, r.Ids)).ToArray(), identities,
            before.ParameterCount(), after.ParameterCount(),
            beforeKeys.Where(k => !afterSet.Contains(k)).ToArray(), afterKeys.Where(k => !beforeSet.Contains(k)).ToArray());
    }

    private static void Walk(Module b, Module a, string path, List<(string, Module, Module)> changes)
    {
        if (ReferenceEquals(a, b)) return;
        var sameShape = a.GetType() == b.GetType() && a.TypeName == b.TypeName && a.Children.Names.SequenceEqual(b.Children.Names);
        // A container keeps its kind and child names across fusion, so its changes are in the children; a leaf (or a container
        // whose children were rewritten into another kind) changed as a whole.
        if (sameShape && b.Children.Count > 0 && a.State.Equals(b.State))
        {
            foreach (var c in b.Children)
                Walk(c.Module, a.Children[c.Name], ModulePath.Join(path, c.Name), changes);
            return;
        }
        if (!b.Equals(a)) changes.Add((path, b, a));
    }

    /// <summary>
    /// A report: one summary line, then one line per replaced module, then the state keys removed and added, e.g.
    /// <c>1 module replaced, 2 turned into Identity, 32 parameters folded away (2,432 -> 2,400)</c>.
    /// </summary>
    public override string ToString()
    {
        static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.Append($"{Replaced.Count} module{(Replaced.Count == 1 ? "" : "s")} replaced, {Identities.Count} turned into Identity, ")
          .Append($"{N(ParametersFolded)} parameters folded away ({N(ParametersBefore)} -> {N(ParametersAfter)})");
        foreach (var r in Replaced) sb.Append("\n  ").Append(r);
        foreach (var id in Identities.Where(i => !Replaced.Any(r => r.IdentityPaths.Contains(i))))
            sb.Append($"\n  {id.Key}: {id.Value} -> Identity");
        if (RemovedState.Count > 0) sb.Append("\n  state removed: ").Append(string.Join(", ", RemovedState));
        if (AddedState.Count > 0) sb.Append("\n  state added: ").Append(string.Join(", ", AddedState));
        return sb.ToString();
    }
}
