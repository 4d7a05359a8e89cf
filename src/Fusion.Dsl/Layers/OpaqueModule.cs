using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// A library module this project carries but does not model (<c>nn.LayerNorm</c>, <c>nn.GELU</c>,
/// <c>nn.MultiheadAttention</c>, ...): its type, namespace, plain constructor attributes, PyTorch's printed
/// <c>extra_repr</c>, its state and its children are kept exactly and written back, so a model holding it can be
/// fused around it and returned to PyTorch unchanged. Nothing about what it computes is assumed: the dataflow analysis
/// reads it as a black box (its children are not called from outside it), no rule matches it, and the engine and the
/// ONNX exporter refuse it by name.
/// </summary>
public sealed class OpaqueModule : Module
{
    private OpaqueModule(ModuleParts parts, string typeName, string ns, ImmutableArray<KeyValuePair<string, object?>> arguments, string extraRepr)
        : base(parts)
    {
        if (string.IsNullOrWhiteSpace(typeName)) throw new ArgumentException("an opaque module needs a type name");
        if (string.IsNullOrWhiteSpace(ns)) throw new ArgumentException($"opaque module {typeName} needs a namespace");
        TypeName = typeName; _namespace = ns; _arguments = arguments; ExtraRepr = extraRepr;
    }

    private readonly string _namespace;
    private readonly ImmutableArray<KeyValuePair<string, object?>> _arguments;

    /// <inheritdoc />
    public override string TypeName { get; }

    /// <summary>The Python namespace of its class (<c>torch.nn</c> for the classes <c>torch.nn</c> exports).</summary>
    public override string Namespace => _namespace;

    /// <summary>The plain attributes recorded by the exporter (null, booleans, integers, doubles, strings, lists of them).</summary>
    public override IReadOnlyList<KeyValuePair<string, object?>> Arguments => _arguments;

    /// <summary>PyTorch's own <c>extra_repr()</c> of the module, so that <c>print(model)</c> matches PyTorch's.</summary>
    public override string ExtraRepr { get; }

    /// <summary>Creates an opaque module.</summary>
    /// <exception cref="ArgumentException">The type name or namespace is empty.</exception>
    public static OpaqueModule Create(string typeName, string ns, IEnumerable<KeyValuePair<string, object?>>? arguments = null,
        string extraRepr = "", ModuleChildren? children = null, TensorDict? state = null, bool training = false)
        => new(ModuleParts.Leaf(training, state) with { Children = children ?? ModuleChildren.Empty }, typeName, ns,
            arguments?.ToImmutableArray() ?? [], extraRepr ?? "");

    /// <summary>The recorded attribute <paramref name="name"/>, or <paramref name="fallback"/> when the exporter did not
    /// record it.</summary>
    public object? Argument(string name, object? fallback = null)
    {
        foreach (var (key, value) in _arguments)
            if (key == name) return value;
        return fallback;
    }

    /// <summary>A recorded number attribute (an integer counts, as in Python).</summary>
    /// <exception cref="ArgumentException">It is missing or not a number; the message names the module and attribute.</exception>
    public double NumberArgument(string name) => Argument(name) switch
    {
        long l => l,
        double d => d,
        var v => throw Bad(name, "a number", v),
    };

    /// <summary>A recorded non-negative integer attribute that fits in 32 bits.</summary>
    /// <exception cref="ArgumentException">It is missing or something else.</exception>
    public int CountArgument(string name) => Argument(name) is long l and >= 0 and <= int.MaxValue ? (int)l : throw Bad(name, "a non-negative integer", Argument(name));

    /// <summary>A recorded attribute that is one non-negative integer or a list of them (<c>normalized_shape</c>).</summary>
    /// <exception cref="ArgumentException">It is something else.</exception>
    public int[] SizesArgument(string name)
    {
        var v = Argument(name);
        IEnumerable<object?> items = v is long ? [v] : v as IEnumerable<object?> ?? throw Bad(name, "a list of non-negative integers", v);
        return [.. items.Select(i => i is long l and >= 0 and <= int.MaxValue ? (int)l : throw Bad(name, "a list of non-negative integers", v))];
    }

    /// <summary>A recorded True/False attribute, or <paramref name="fallback"/> when it was not recorded.</summary>
    /// <exception cref="ArgumentException">It is something else.</exception>
    public bool FlagArgument(string name, bool fallback) => Argument(name, fallback) is bool b ? b : throw Bad(name, "True or False", Argument(name));

    private ArgumentException Bad(string name, string expected, object? got)
        => new($"{TypeName}'s attribute '{name}' must be {expected}, got {Graphs.OpCall.DescribeValue(got)}");

    private protected override Module Rebuild(ModuleParts parts) => new OpaqueModule(parts, TypeName, _namespace, _arguments, ExtraRepr);

    private protected override bool HyperparametersEqual(Module other)
        => other is OpaqueModule o && o._namespace == _namespace && o.ExtraRepr == ExtraRepr
           && o._arguments.Length == _arguments.Length
           && o._arguments.Zip(_arguments).All(p => p.First.Key == p.Second.Key && ValueEquals(p.First.Value, p.Second.Value));

    private static bool ValueEquals(object? a, object? b) => (a, b) switch
    {
        (System.Collections.IEnumerable x, System.Collections.IEnumerable y) when a is not string && b is not string
            => x.Cast<object?>().SequenceEqual(y.Cast<object?>(), EqualityComparer<object?>.Create(ValueEquals, v => v?.GetHashCode() ?? 0)),
        _ => Equals(a, b),
    };
}
