using System.Collections.Immutable;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// What every module has besides its hyperparameters: the training flag, named children, own state and hooks.
/// <see cref="Module"/> keeps one of these and rebuilds only when a part changes by reference.
/// </summary>
/// <param name="Training">PyTorch's <c>module.training</c>.</param>
/// <param name="Children">Ordered named children.</param>
/// <param name="State">Own parameters and buffers, in <c>state_dict</c> order.</param>
/// <param name="PreHooks">Forward pre-hooks, in registration order.</param>
/// <param name="Hooks">Forward hooks, in registration order.</param>
public sealed record ModuleParts(
    bool Training,
    ModuleChildren Children,
    TensorDict State,
    ImmutableArray<ForwardPreHook> PreHooks,
    ImmutableArray<ForwardHook> Hooks)
{
    /// <summary>An eval-mode leaf with no state and no hooks.</summary>
    public static ModuleParts Leaf(bool training = false, TensorDict? state = null)
        => new(training, ModuleChildren.Empty, state ?? TensorDict.Empty, ImmutableArray<ForwardPreHook>.Empty, ImmutableArray<ForwardHook>.Empty);

    /// <summary>True when every part is the very same object as in <paramref name="other"/> (so no rebuild is needed).</summary>
    public bool SameAs(ModuleParts other)
        => Training == other.Training
           && ReferenceEquals(Children, other.Children)
           && ReferenceEquals(State, other.State)
           && PreHooks == other.PreHooks   // ImmutableArray == compares the backing array by reference
           && Hooks == other.Hooks;

    /// <summary>Structural equality: children and state compared by value, hooks by identity, in order.</summary>
    public bool Equals(ModuleParts? other)
        => other is not null
           && Training == other.Training
           && Children.Equals(other.Children)
           && State.Equals(other.State)
           && PreHooks.SequenceEqual(other.PreHooks)
           && Hooks.SequenceEqual(other.Hooks);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Training, Children, State, PreHooks.Length, Hooks.Length);
}
