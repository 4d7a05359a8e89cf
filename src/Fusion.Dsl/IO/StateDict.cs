using System.Collections.Immutable;
using System.Text;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>A tensor whose shape or dtype differs from the one the module holds under the same key.</summary>
/// <param name="Key">The state_dict key.</param>
/// <param name="Expected">What the model holds (shape and dtype).</param>
/// <param name="Given">What the state dictionary gave.</param>
public sealed record StateDictMismatch(string Key, Tensor Expected, Tensor Given)
{
    /// <inheritdoc />
    public override string ToString()
        => $"size mismatch for {Key}: copying a param with shape {Describe(Given)} from checkpoint, the shape in current model is {Describe(Expected)}.";

    private static string Describe(Tensor t) => Tensor.ShapeString(t.Shape) + (t.DType == DType.Float32 ? "" : $" ({t.DType})");
}

/// <summary>
/// <see cref="StateDict.Load"/> refused a state dictionary. Lists every problem at once, PyTorch-style
/// (<c>Error(s) in loading state_dict for M: Missing key(s) ... Unexpected key(s) ... size mismatch for ...</c>).
/// </summary>
public sealed class StateDictException : Exception
{
    /// <summary>Creates the error.</summary>
    public StateDictException(string moduleType, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<StateDictMismatch> mismatched, IReadOnlyList<string> duplicated)
        : base(Compose(moduleType, missing, unexpected, mismatched, duplicated))
    {
        ModuleType = moduleType; MissingKeys = missing; UnexpectedKeys = unexpected; Mismatches = mismatched; DuplicatedKeys = duplicated;
    }

    /// <summary>The root module's type name.</summary>
    public string ModuleType { get; }
    /// <summary>Keys of the model that the dictionary lacks (reported in strict mode only).</summary>
    public IReadOnlyList<string> MissingKeys { get; }
    /// <summary>Keys of the dictionary that the model lacks (reported in strict mode only).</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }
    /// <summary>Keys whose tensor has another shape or dtype than the model's (always reported).</summary>
    public IReadOnlyList<StateDictMismatch> Mismatches { get; }
    /// <summary>Keys the dictionary gives more than once (always reported: which one wins would be arbitrary).</summary>
    public IReadOnlyList<string> DuplicatedKeys { get; }

    private static string Compose(string type, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<StateDictMismatch> mismatched, IReadOnlyList<string> duplicated)
    {
        static string Keys(IEnumerable<string> keys) => string.Join(", ", keys.Select(k => $"\"{k}\""));
        var sb = new StringBuilder($"Error(s) in loading state_dict for {type}:");
        if (missing.Count > 0) sb.Append($"\n\tMissing key(s) in state_dict: {Keys(missing)}.");
        if (unexpected.Count > 0) sb.Append($"\n\tUnexpected key(s) in state_dict: {Keys(unexpected)}.");
        if (duplicated.Count > 0) sb.Append($"\n\tDuplicated key(s) in state_dict: {Keys(duplicated)}.");
        foreach (var m in mismatched) sb.Append("\n\t").Append(m);
        return sb.ToString();
    }
}

/// <summary>
/// PyTorch's <c>load_state_dict</c> for the immutable algebra: returns a new tree whose tensors are taken from a state
/// dictionary keyed like <see cref="Module.StateDict"/> (<c>features.0.weight</c>). Modules whose tensors do not change
/// (same objects, or bit-identical values) are shared with the input tree, so loading a model's own state returns it.
/// </summary>
public static class StateDict
{
    /// <summary>
    /// Loads <paramref name="state"/> into <paramref name="model"/>. Strict mode requires the keys to match exactly; non-strict
    /// mode keeps the model's tensor for a missing key and ignores unexpected keys. A tensor whose shape or dtype differs from
    /// the model's is refused in both modes, as in PyTorch. Everything is checked before anything is built.
    /// </summary>
    /// <exception cref="StateDictException">Keys are missing or unexpected (strict), repeated, or a tensor has the wrong shape or dtype.</exception>
    public static Module Load(Module model, IEnumerable<KeyValuePair<string, Tensor>> state, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(state);
        var given = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var duplicated = new List<string>();
        foreach (var (k, t) in state)
        {
            ArgumentNullException.ThrowIfNull(t, $"state[{k}]");
            if (!given.TryAdd(k, t) && !duplicated.Contains(k)) duplicated.Add(k);
        }

        var own = model.StateDict().ToList();
        var ownKeys = own.Select(kv => kv.Key).ToHashSet(StringComparer.Ordinal);
        var missing = strict ? own.Where(kv => !given.ContainsKey(kv.Key)).Select(kv => kv.Key).ToList() : [];
        var unexpected = strict ? given.Keys.Where(k => !ownKeys.Contains(k)).ToList() : [];
        var mismatched = own.Where(kv => given.TryGetValue(kv.Key, out var g) && (g.DType != kv.Value.DType || !g.Shape.SequenceEqual(kv.Value.Shape)))
            .Select(kv => new StateDictMismatch(kv.Key, kv.Value, given[kv.Key])).ToList();
        if (missing.Count + unexpected.Count + mismatched.Count + duplicated.Count > 0)
            throw new StateDictException(model.TypeName, missing, unexpected, mismatched, duplicated);

        return Rebuild(model, "", given, model.TypeName);
    }

    /// <summary>
    /// Loads the state dictionary in the file at <paramref name="path"/>, a <c>torch.save</c> checkpoint (<c>.pt</c>,
    /// <c>.pth</c>) or a safetensors file, told apart by content (<see cref="StateDictFile.Read"/>).
    /// </summary>
    /// <exception cref="ModelFormatException">The file cannot be read as either kind.</exception>
    /// <exception cref="StateDictException">Its keys or tensors do not fit the model (as for <see cref="Load"/>).</exception>
    public static Module LoadFile(Module model, string path, bool strict = true) => Load(model, StateDictFile.Read(path), strict);

    private static Module Rebuild(Module m, string prefix, Dictionary<string, Tensor> given, string rootType)
    {
        var state = m.State;
        KeyValuePair<string, Tensor>[]? replaced = null;
        for (var i = 0; i < state.Count; i++)
        {
            var (name, current) = state[i];
            // Bit-identical tensors keep the object the model already holds, so that the module can be shared.
            if (!given.TryGetValue(prefix + name, out var t) || ReferenceEquals(t, current) || t.Equals(current)) continue;
            replaced ??= state.ToArray();
            replaced[i] = new(name, t);
        }
        var newState = replaced is null ? state : TensorDict.Create(replaced.Select(kv => (kv.Key, (Tensor?)kv.Value)).ToArray());
        var children = m.Children.Map(c => Rebuild(c.Module, prefix + c.Name + ".", given, rootType));
        try
        {
            return m.Update(m.Parts with { State = newState, Children = children });
        }
        catch (ArgumentException e)
        {
            // Shapes and dtypes were checked above; a layer may still refuse values (e.g. a count that must be a scalar).
            throw new ArgumentException($"loading state_dict into {rootType}: the module at '{prefix.TrimEnd('.')}' ({m.TypeName}) refused its new state: {e.Message}", e);
        }
    }

    /// <summary>The keys of <paramref name="model"/>'s state dictionary in order (a convenience for error reporting and tools).</summary>
    public static ImmutableArray<string> Keys(Module model) => model.StateDict().Select(kv => kv.Key).ToImmutableArray();
}
