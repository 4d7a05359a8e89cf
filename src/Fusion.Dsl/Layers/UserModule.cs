using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;

namespace Fusion.Dsl.Layers;

/// <summary>
/// A user-defined container (a PyTorch <c>nn.Module</c> subclass such as torchvision's <c>BasicBlock</c>). Its behaviour is
/// its <see cref="Forward"/> graph, whose module calls name paths inside this subtree. Without a graph it can still be
/// part of a model whose ancestor's graph calls into it; <c>QuantStub</c> and <c>DeQuantStub</c> without children act as
/// the identity (their float-mode behaviour).
/// </summary>
public sealed class UserModule : Module
{
    private UserModule(ModuleParts parts, string typeName, Graph? forward) : base(parts)
    {
        if (string.IsNullOrWhiteSpace(typeName)) throw new ArgumentException("a user module needs a type name");
        TypeName = typeName;
        Forward = forward;
        if (forward is not null) CheckCalls(forward);
    }

    /// <inheritdoc />
    public override string TypeName { get; }

    /// <inheritdoc />
    public override string Namespace => Namespaces.User;

    /// <summary>The dataflow graph of this container's forward, or null.</summary>
    public Graph? Forward { get; }

    /// <summary>Whether the module is a quantization stub that is the identity in float mode.</summary>
    public bool IsIdentityStub => Children.Count == 0 && Forward is null && TypeName is "QuantStub" or "DeQuantStub";

    /// <summary>Creates a user container.</summary>
    /// <exception cref="ArgumentException">A graph node calls a path that does not exist under this container.</exception>
    public static UserModule Create(string typeName, ModuleChildren children, Graph? forward = null, bool training = false, TensorDict? state = null)
        => new(ModuleParts.Leaf(training, state) with { Children = children }, typeName, forward);

    /// <summary>
    /// The parameter or buffer a <c>get_attr</c> node of a graph in this container reads: <paramref name="target"/> is its
    /// dotted path relative to this container, the last segment naming an entry of the owning module's state (as PyTorch's
    /// <c>getattr</c> chain resolves it). Null when the module or the entry does not exist; a graph of this container
    /// never reads such a target, as creating it checks.
    /// </summary>
    public Tensors.Tensor? Attribute(string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var (owner, name) = SplitAttribute(target);
        return ModulePath.TryGet(this, owner, out var m) ? m.State.TryGet(name) : null;
    }

    /// <summary>A <c>get_attr</c> target as the owning module's path (<c>""</c> for this container) and the entry's name.</summary>
    private static (string Owner, string Name) SplitAttribute(string target)
    {
        var dot = target.LastIndexOf('.');
        return dot < 0 ? ("", target) : (target[..dot], target[(dot + 1)..]);
    }

    /// <summary>This container with another forward graph (same instance when it is the same graph).</summary>
    public UserModule WithForward(Graph? forward) => ReferenceEquals(forward, Forward) ? this : new UserModule(Parts, TypeName, forward);

    private void CheckCalls(Graph g)
    {
        foreach (var path in g.ModuleCalls)
            if (!ModulePath.TryGet(this, path, out _))
                throw new ArgumentException($"{TypeName}: graph calls module '{path}', which does not exist ({ModulePath.Describe(this, path)})");
        foreach (var node in g.Nodes.Where(n => n.Op == NodeOp.GetAttr))
        {
            var target = node.Target!;
            var (owner, name) = SplitAttribute(target);
            if (!ModulePath.TryGet(this, owner, out var m))
                throw new ArgumentException($"{TypeName}: graph node '{node.Name}' reads '{target}', but module '{owner}' does not exist ({ModulePath.Describe(this, owner)})");
            if (m.State.TryGet(name) is null)
                throw new ArgumentException($"{TypeName}: graph node '{node.Name}' reads '{target}', which is not a parameter or buffer of '{owner}' (it has: {string.Join(", ", m.State.Names)})");
        }
    }

    private protected override Module Rebuild(ModuleParts parts) => new UserModule(parts, TypeName, Forward);
    private protected override bool HyperparametersEqual(Module other)
        => other is UserModule u && u.TypeName == TypeName && Equals(u.Forward, Forward);
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];
}
