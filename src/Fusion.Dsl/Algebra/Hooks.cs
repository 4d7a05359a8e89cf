using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// A forward pre-hook (PyTorch's <c>register_forward_pre_hook</c>): runs before the module with its input and
/// may return a replacement input (null keeps it). Hooks are compared by reference: the same hook object moved
/// to a fused module is the same hook.
/// </summary>
/// <param name="Name">A label used in reports and errors.</param>
/// <param name="Run">The hook: (module, input) → replacement input or null.</param>
public sealed record ForwardPreHook(string Name, Func<Module, Tensor, Tensor?> Run)
{
    /// <inheritdoc />
    public bool Equals(ForwardPreHook? other) => ReferenceEquals(this, other);
    /// <inheritdoc />
    public override int GetHashCode() => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(this);
}

/// <summary>
/// A forward hook (PyTorch's <c>register_forward_hook</c>): runs after the module with its input and output and
/// may return a replacement output (null keeps it). Compared by reference.
/// </summary>
/// <param name="Name">A label used in reports and errors.</param>
/// <param name="Run">The hook: (module, input, output) → replacement output or null.</param>
public sealed record ForwardHook(string Name, Func<Module, Tensor, Tensor, Tensor?> Run)
{
    /// <inheritdoc />
    public bool Equals(ForwardHook? other) => ReferenceEquals(this, other);
    /// <inheritdoc />
    public override int GetHashCode() => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(this);
}
