namespace Fusion.Dsl.Rules;

/// <summary>The shape of a <c>modules_to_fuse</c> argument as given.</summary>
public enum FuseSpecKind
{
    /// <summary><c>[]</c>: nothing at all.</summary>
    Empty,
    /// <summary><c>["conv1", "bn1", "relu1"]</c>: one group given as a flat list of names.</summary>
    SingleList,
    /// <summary><c>[["conv1", "bn1"], ["conv2", "relu2"]]</c>: a list of groups.</summary>
    ListOfLists,
    /// <summary>Names and lists side by side (<c>["conv1", ["bn1"]]</c>): ambiguous, which fusion must refuse.</summary>
    Mixed,
}
