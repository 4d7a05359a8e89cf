using System.Collections.Frozen;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// A fused group: a sequence whose children are named <c>"0"</c>, <c>"1"</c>(, <c>"2"</c>) and run in order, exactly like
/// PyTorch's <c>torch.ao.nn.intrinsic</c> modules (<c>ConvReLU2d</c>, <c>ConvBn2d</c>, <c>ConvBnReLU2d</c>, <c>LinearReLU</c>,
/// <c>LinearBn1d</c>, <c>BNReLU2d</c>, ...). Kinds PyTorch lacks (<c>ConvReLU6_2d</c>, <c>LinearBnReLU1d</c>, ...) live in the
/// <c>fusion.dsl</c> namespace. The child kinds are checked against the type name when built.
/// <c>ConvAdd{N}d</c> and <c>ConvAddReLU{N}d</c> (made by the graph rules of <see cref="Rules.RuleSet.Extended"/>) take two
/// inputs, <c>(x, residual)</c>, and compute <c>conv(x) + residual</c>, then the ReLU; every other kind takes one.
/// </summary>
public sealed class FusedModule : Module
{
    private FusedModule(ModuleParts parts, string typeName) : base(parts)
    {
        TypeName = typeName;
        Validate();
    }

    /// <inheritdoc />
    public override string TypeName { get; }

    /// <inheritdoc />
    public override string Namespace => Signatures[TypeName].PyTorch ? Namespaces.Intrinsic : Namespaces.FusionDsl;

    /// <summary>How many tensors a call passes: 2 for <c>ConvAdd{N}d</c> and <c>ConvAddReLU{N}d</c> (the input and the residual
    /// added to the convolution's output), 1 for every other kind.</summary>
    public int InputCount => Signatures[TypeName].Inputs;

    /// <summary>The child modules in order.</summary>
    public IEnumerable<Module> Modules => Children.Select(c => c.Module);

    /// <summary>Creates the fused module <paramref name="typeName"/> from its parts, training flag taken from the first part.</summary>
    /// <exception cref="ArgumentException">The name is unknown, or the parts do not have the kinds the name requires.</exception>
    public static FusedModule Create(string typeName, params Module[] modules)
    {
        if (modules.Length == 0) throw new ArgumentException($"{typeName} needs at least one child");
        return new FusedModule(ModuleParts.Leaf(modules[0].Training) with { Children = ModuleChildren.Numbered(modules) }, typeName);
    }

    private static readonly FrozenDictionary<string, (bool PyTorch, string[] Children, int Inputs)> Signatures = BuildSignatures();

    private static FrozenDictionary<string, (bool, string[], int)> BuildSignatures()
    {
        var d = new Dictionary<string, (bool, string[], int)>();
        foreach (var n in new[] { 1, 2, 3 })
        {
            d[$"ConvReLU{n}d"] = (true, [$"Conv{n}d", "ReLU"], 1);
            d[$"ConvBn{n}d"] = (true, [$"Conv{n}d", $"BatchNorm{n}d"], 1);
            d[$"ConvBnReLU{n}d"] = (true, [$"Conv{n}d", $"BatchNorm{n}d", "ReLU"], 1);
            d[$"BNReLU{n}d"] = (n != 1, [$"BatchNorm{n}d", "ReLU"], 1);
            // This project's own kinds (issue: patterns PyTorch lacks).
            d[$"ConvReLU6_{n}d"] = (false, [$"Conv{n}d", "ReLU6"], 1);
            d[$"ConvHardswish{n}d"] = (false, [$"Conv{n}d", "Hardswish"], 1);
            d[$"ConvBnReLU6_{n}d"] = (false, [$"Conv{n}d", $"BatchNorm{n}d", "ReLU6"], 1);
            d[$"ConvBnHardswish{n}d"] = (false, [$"Conv{n}d", $"BatchNorm{n}d", "Hardswish"], 1);
            d[$"ConvSiLU{n}d"] = (false, [$"Conv{n}d", "SiLU"], 1);
            d[$"ConvBnSiLU{n}d"] = (false, [$"Conv{n}d", $"BatchNorm{n}d", "SiLU"], 1);
            d[$"ConvTransposeReLU{n}d"] = (false, [$"ConvTranspose{n}d", "ReLU"], 1);
            // Two inputs: relu(conv(x) + residual), made by the residual graph rules.
            d[$"ConvAdd{n}d"] = (false, [$"Conv{n}d"], 2);
            d[$"ConvAddReLU{n}d"] = (false, [$"Conv{n}d", "ReLU"], 2);
        }
        d["LinearReLU"] = (true, ["Linear", "ReLU"], 1);
        d["LinearBn1d"] = (true, ["Linear", "BatchNorm1d"], 1);
        d["LinearReLU6"] = (false, ["Linear", "ReLU6"], 1);
        d["LinearBnReLU1d"] = (false, ["Linear", "BatchNorm1d", "ReLU"], 1);
        return d.ToFrozenDictionary();
    }

    private void Validate()
    {
        if (!Signatures.TryGetValue(TypeName, out var sig))
            throw new ArgumentException($"unknown fused module type '{TypeName}'; known: {string.Join(", ", Signatures.Keys.Order())}");
        RequireStateNames(Parts, TypeName);
        var kinds = Children.Select(c => c.Module.TypeName).ToArray();
        if (!kinds.SequenceEqual(sig.Children))
            throw new ArgumentException($"{TypeName} takes ({string.Join(", ", sig.Children)}), got ({string.Join(", ", kinds)})");
        for (var i = 0; i < Children.Count; i++)
            if (Children[i].Name != i.ToString(System.Globalization.CultureInfo.InvariantCulture))
                throw new ArgumentException($"{TypeName}: children must be named 0, 1, 2 in order, got '{Children[i].Name}'");
    }

    private protected override Module Rebuild(ModuleParts parts) => new FusedModule(parts, TypeName);
    private protected override bool HyperparametersEqual(Module other) => other is FusedModule f && f.TypeName == TypeName;
    /// <inheritdoc />
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => [];

    /// <inheritdoc />
    public override bool RunsInTraining => Children.Any(c => c.Module.RunsInTraining);
}
