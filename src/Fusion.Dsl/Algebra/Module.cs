using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Algebra;

/// <summary>
/// A node of the immutable module algebra: PyTorch's <c>nn.Module</c> as a value. The hierarchy is closed
/// (constructors are private to this assembly): a switch over it can list every kind, but C# does not check that it
/// does, so a switch ends in a refusal naming the kind it does not handle.
/// Every <c>WithX</c> goes through one <see cref="Update"/>, which returns this instance when nothing changed;
/// rewrites therefore copy only the path from the root to a change and share every other subtree.
/// Equality is structural (<see cref="Equals(Module?)"/>); use <see cref="object.ReferenceEquals"/> to test sharing.
/// </summary>
public abstract class Module : IEquatable<Module>
{
    private protected Module(ModuleParts parts)
    {
        Parts = parts ?? throw new ArgumentNullException(nameof(parts));
    }

    /// <summary>Training flag, children, state and hooks.</summary>
    public ModuleParts Parts { get; }

    /// <summary>PyTorch's class name: <c>Conv2d</c>, <c>BatchNorm1d</c>, <c>ConvReLU2d</c>, or a user class name.</summary>
    public abstract string TypeName { get; }

    /// <summary>
    /// <c>torch.nn</c> for standard layers, <c>torch.ao.nn.intrinsic</c> for PyTorch's fused groups,
    /// <c>fusion.dsl</c> for this project's own fused groups, <c>user</c> for user containers.
    /// </summary>
    public virtual string Namespace => Namespaces.TorchNn;

    /// <summary>PyTorch's <c>module.training</c>.</summary>
    public bool Training => Parts.Training;

    /// <summary>Ordered named children.</summary>
    public ModuleChildren Children => Parts.Children;

    /// <summary>Own parameters and buffers (not the children's), in <c>state_dict</c> order.</summary>
    public TensorDict State => Parts.State;

    /// <summary>
    /// Whether the module's forward runs in training mode: its own <see cref="Training"/> flag, except for a fused container,
    /// whose own flag PyTorch leaves at <c>True</c> when fusion builds it and which runs its children with their own flags;
    /// there it is whether any child runs in training mode. Printers show this, not the raw flag.
    /// </summary>
    public virtual bool RunsInTraining => Training;

    /// <summary>Forward pre-hooks.</summary>
    public ImmutableArray<ForwardPreHook> PreHooks => Parts.PreHooks;

    /// <summary>Forward hooks.</summary>
    public ImmutableArray<ForwardHook> Hooks => Parts.Hooks;

    /// <summary>
    /// The single point through which every change goes: returns this instance when <paramref name="parts"/>
    /// is made of the same objects, otherwise a new module of the same kind and hyperparameters, validated.
    /// </summary>
    /// <exception cref="ArgumentException">The new parts are invalid for this kind of module (wrong state shape, children where none belong).</exception>
    public Module Update(ModuleParts parts) => parts.SameAs(Parts) ? this : Rebuild(parts);

    /// <summary>Creates a module of the same kind and hyperparameters with other parts (validating them).</summary>
    private protected abstract Module Rebuild(ModuleParts parts);

    /// <summary>Compares the kind-specific hyperparameters; <paramref name="other"/> has the same runtime type.</summary>
    private protected abstract bool HyperparametersEqual(Module other);

    /// <summary>The hyperparameters under PyTorch's constructor argument names, in PyTorch's order.</summary>
    public abstract IReadOnlyList<KeyValuePair<string, object?>> Arguments { get; }

    /// <summary>This module with another training flag (not recursive; see <see cref="Train"/>).</summary>
    public Module WithTraining(bool training) => Update(Parts with { Training = training });

    /// <summary>This module with other children.</summary>
    public Module WithChildren(ModuleChildren children) => Update(Parts with { Children = children });

    /// <summary>This module with other own state.</summary>
    public Module WithState(TensorDict state) => Update(Parts with { State = state });

    /// <summary>This module with other hooks.</summary>
    public Module WithHooks(ImmutableArray<ForwardPreHook> preHooks, ImmutableArray<ForwardHook> hooks)
        => Update(Parts with { PreHooks = preHooks, Hooks = hooks });

    /// <summary>This module with a forward pre-hook added last.</summary>
    public Module AddPreHook(ForwardPreHook hook) => Update(Parts with { PreHooks = PreHooks.Add(hook) });

    /// <summary>This module with a forward hook added last.</summary>
    public Module AddHook(ForwardHook hook) => Update(Parts with { Hooks = Hooks.Add(hook) });

    /// <summary>This module with one child replaced (same instance when it is already that child).</summary>
    public Module WithChild(string name, Module child) => WithChildren(Children.SetItem(name, child));

    /// <summary>Sets the training flag on this module and every descendant, like PyTorch's <c>module.train(mode)</c>;
    /// subtrees already in that mode are shared.</summary>
    public Module Train(bool mode = true)
    {
        var children = Children.Map(c => c.Module.Train(mode));
        return Update(Parts with { Training = mode, Children = children });
    }

    /// <summary>Like PyTorch's <c>module.eval()</c>: <c>Train(false)</c>.</summary>
    public Module Eval() => Train(false);

    /// <summary>The names in <see cref="State"/> that are buffers (PyTorch's <c>register_buffer</c>) rather than parameters,
    /// such as BatchNorm's running statistics.</summary>
    public virtual IReadOnlyCollection<string> BufferNames => [];

    /// <summary>Number of parameter elements in this module and every descendant, as PyTorch's
    /// <c>sum(p.numel() for p in m.parameters())</c> counts them (buffers excluded).</summary>
    public long ParameterCount()
    {
        long n = 0;
        foreach (var kv in State)
            if (!BufferNames.Contains(kv.Key)) n += kv.Value.Count;
        foreach (var c in Children) n += c.Module.ParameterCount();
        return n;
    }

    /// <summary>Number of elements in this module's own state and every descendant's (parameters and buffers).</summary>
    public long StateElementCount()
    {
        long n = 0;
        foreach (var kv in State) n += kv.Value.Count;
        foreach (var c in Children) n += c.Module.StateElementCount();
        return n;
    }

    /// <summary>
    /// Every tensor of the subtree under PyTorch's <c>state_dict</c> key names (<c>features.0.weight</c>),
    /// own entries first, then each child's in order.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateDict(string prefix = "")
    {
        foreach (var kv in State) yield return new(prefix + kv.Key, kv.Value);
        foreach (var c in Children)
            foreach (var kv in c.Module.StateDict(prefix + c.Name + "."))
                yield return kv;
    }

    /// <summary>
    /// Every module of the subtree with its dotted path, this one first (path <c>""</c>), depth-first in child order,
    /// like PyTorch's <c>named_modules()</c> (a module reachable twice is listed at each path).
    /// </summary>
    public IEnumerable<KeyValuePair<string, Module>> NamedModules(string prefix = "")
    {
        yield return new(prefix, this);
        foreach (var c in Children)
            foreach (var kv in c.Module.NamedModules(ModulePath.Join(prefix, c.Name)))
                yield return kv;
    }

    /// <summary>Structural equality: same kind, hyperparameters, training flag, children, bit-identical state, same hooks.</summary>
    public bool Equals(Module? other)
    {
        if (ReferenceEquals(this, other)) return true;
        return other is not null
               && other.GetType() == GetType()
               && other.TypeName == TypeName
               && HyperparametersEqual(other)
               && Parts.Equals(other.Parts);
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Module);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(TypeName, Parts);

    /// <summary>PyTorch's <c>extra_repr()</c>: the arguments <c>print(model)</c> shows after the type name, as torch 1.13 writes
    /// them for this kind (<c>3, 16, kernel_size=(3, 3), stride=(1, 1)</c>); empty for containers.</summary>
    public virtual string ExtraRepr => "";

    /// <summary>The tree as PyTorch's <c>print(model)</c> shows it (see <see cref="ModuleRepr"/>).</summary>
    public override string ToString() => ModuleRepr.Print(this);

    /// <summary>Throws unless this module has no children (for leaf layers).</summary>
    private protected static void RequireNoChildren(ModuleParts parts, string typeName)
    {
        if (parts.Children.Count != 0)
            throw new ArgumentException($"{typeName} has no children, but {parts.Children.Count} were given ({string.Join(", ", parts.Children.Names)})");
    }

    /// <summary>Throws unless the own state holds exactly the allowed names.</summary>
    private protected static void RequireStateNames(ModuleParts parts, string typeName, params string[] allowed)
    {
        foreach (var name in parts.State.Names)
            if (Array.IndexOf(allowed, name) < 0)
                throw new ArgumentException($"{typeName} has no state entry '{name}' (expected {(allowed.Length == 0 ? "none" : string.Join(", ", allowed))})");
    }

    /// <summary>Throws unless <paramref name="t"/> is float32 with exactly <paramref name="shape"/>.</summary>
    private protected static void RequireShape(Tensor? t, string typeName, string name, params int[] shape)
    {
        if (t is null) throw new ArgumentException($"{typeName} needs state entry '{name}' of shape {Tensor.ShapeString(shape)}");
        if (t.DType != DType.Float32) throw new ArgumentException($"{typeName}.{name} must be float32, got {t.DType}");
        if (!t.Shape.SequenceEqual(shape))
            throw new ArgumentException($"{typeName}.{name} must have shape {Tensor.ShapeString(shape)}, got {Tensor.ShapeString(t.Shape)}");
    }
}

/// <summary>The namespaces a module can come from (see <see cref="Module.Namespace"/>).</summary>
public static class Namespaces
{
    /// <summary>Standard layers: <c>torch.nn</c>.</summary>
    public const string TorchNn = "torch.nn";
    /// <summary>PyTorch's fused groups: <c>torch.ao.nn.intrinsic</c>.</summary>
    public const string Intrinsic = "torch.ao.nn.intrinsic";
    /// <summary>Fused groups PyTorch lacks, defined by this project.</summary>
    public const string FusionDsl = "fusion.dsl";
    /// <summary>User-defined containers and stubs.</summary>
    public const string User = "user";
}
