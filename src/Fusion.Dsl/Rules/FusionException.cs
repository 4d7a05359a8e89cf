namespace Fusion.Dsl.Rules;

/// <summary>Why a fusion was refused. Each kind corresponds to one of PyTorch's failures (or to a case PyTorch
/// silently gets wrong) and tells the caller what to change.</summary>
public enum FusionErrorKind
{
    /// <summary>The <c>modules_to_fuse</c> argument is malformed: empty, an empty group, a mixed list of names and lists,
    /// an empty or repeated name, or one name inside another of the same group.</summary>
    InvalidGroups,
    /// <summary>A dotted name does not resolve (PyTorch: <c>AttributeError: ... has no attribute ...</c>).</summary>
    MissingName,
    /// <summary>No rule has the group's sequence of module kinds (PyTorch: <c>did not find fuser method for: ...</c>).</summary>
    NoRule,
    /// <summary>The modules of a group are not all in the same mode (PyTorch: <c>... must be in the same mode (train or eval).</c>).</summary>
    MixedModes,
    /// <summary>BatchNorm folding asked of modules in training mode (PyTorch: <c>Fusion only for eval!</c>).</summary>
    TrainingMode,
    /// <summary>The BatchNorm has no running statistics (<c>track_running_stats=False</c>).</summary>
    NoRunningStats,
    /// <summary>QAT fusion needs an affine BatchNorm (PyTorch: <c>Only support fusing BatchNorm with affine set to True</c>).</summary>
    NotAffine,
    /// <summary>The BatchNorm's <c>num_features</c> differs from the preceding layer's output channels.</summary>
    ChannelMismatch,
    /// <summary>The pattern has no QAT form (PyTorch: <c>Fusing ConvTranspose+BatchNorm not yet supported in QAT.</c>).</summary>
    NoQatForm,
    /// <summary>A hook in the group cannot be kept by the fused module (PyTorch drops it silently).</summary>
    HookNotKept,
    /// <summary>A custom fuser function or rule applier returned null, a list of the wrong length, or a null entry.</summary>
    FuserResult,
    /// <summary>Fusing the group would change what the model computes: a member's output is read by something other than the
    /// next member, or a member runs from more than one place (PyTorch fuses such groups silently; see
    /// <see cref="Analysis.Dataflow.GroupViolation"/>).</summary>
    UnsafeDataflow,
    /// <summary>A BatchNorm before a convolution cannot be folded into it because the convolution zero-pads its input (the border
    /// outputs would differ).</summary>
    PaddingNotFoldable,
    /// <summary>A member lies inside a module fusion produced (<c>ConvReLU2d</c>, <c>ConvBn2d</c>, ...), whose children are
    /// fixed by its type. PyTorch fuses such a group into a malformed module (a <c>ConvReLU2d</c> holding a
    /// <c>ConvReLU2d</c>); this project refuses it.</summary>
    InsideFusedModule,
}

/// <summary>
/// A refused fusion. The message names the group, its paths, the module kinds found there and what to do;
/// the same facts are available as properties. When it is thrown no model has been produced and the input is unchanged.
/// </summary>
public sealed class FusionException : Exception
{
    /// <summary>Creates the error; <paramref name="message"/> should already name the group and say what to do.</summary>
    /// <param name="kind">What went wrong.</param>
    /// <param name="groupIndex">Index of the group in <c>modules_to_fuse</c>, or -1 when the whole argument is at fault.</param>
    /// <param name="paths">The dotted names of the group (empty when not known).</param>
    /// <param name="moduleKinds">The type names found at those paths (empty when they were not resolved).</param>
    /// <param name="message">The full explanation.</param>
    /// <param name="ruleName">The rule whose guard failed, if any.</param>
    /// <param name="guardName">The guard that failed, if any.</param>
    /// <param name="inner">The underlying error (for <see cref="FusionErrorKind.MissingName"/>, the path error).</param>
    public FusionException(FusionErrorKind kind, int groupIndex, IReadOnlyList<string> paths, IReadOnlyList<string> moduleKinds,
        string message, string? ruleName = null, string? guardName = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        GroupIndex = groupIndex;
        Paths = paths.ToArray();
        ModuleKinds = moduleKinds.ToArray();
        RuleName = ruleName;
        GuardName = guardName;
    }

    /// <summary>What went wrong.</summary>
    public FusionErrorKind Kind { get; }

    /// <summary>Index of the offending group in <c>modules_to_fuse</c> (0 for a single list of names), or -1 when
    /// the argument as a whole is malformed.</summary>
    public int GroupIndex { get; }

    /// <summary>The dotted names of the offending group.</summary>
    public IReadOnlyList<string> Paths { get; }

    /// <summary>The module type names found at <see cref="Paths"/> (fewer when a path did not resolve).</summary>
    public IReadOnlyList<string> ModuleKinds { get; }

    /// <summary>The rule that refused the group, when a rule guard failed.</summary>
    public string? RuleName { get; }

    /// <summary>The guard that failed, when a rule guard failed.</summary>
    public string? GuardName { get; }

    /// <summary>Composes the standard message: which group, where, what was found, the problem and the remedy.</summary>
    internal static FusionException Create(FusionErrorKind kind, int groupIndex, IReadOnlyList<string> paths,
        IReadOnlyList<string> moduleKinds, string problem, string remedy, string? ruleName = null, string? guardName = null,
        Exception? inner = null)
    {
        var where = groupIndex < 0 ? "modules_to_fuse" : $"group {groupIndex} {FormatPaths(paths)}";
        var found = moduleKinds.Count == 0 ? "" : $" ({string.Join(", ", moduleKinds)})";
        var message = $"{kind}: cannot fuse {where}{found}: {problem}. To fix: {remedy}";
        return new FusionException(kind, groupIndex, paths, moduleKinds, message, ruleName, guardName, inner);
    }

    /// <summary>Formats paths as PyTorch prints a list of strings: <c>['conv1', 'bn1']</c>.</summary>
    internal static string FormatPaths(IEnumerable<string> paths) => "[" + string.Join(", ", paths.Select(p => $"'{p}'")) + "]";
}
