using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// A layer's constructor arguments bound to its <see cref="LayerDescriptor"/>: the values given, converted to their kinds and
/// checked against the parameter list, PyTorch's defaults for the rest, plus the own tensors and training flag to build with.
/// Made by <see cref="LayerDescriptor.Bind"/>; read by the descriptor's factory.
/// </summary>
public sealed class LayerArguments
{
    private readonly Dictionary<string, object?> _given;

    internal LayerArguments(LayerDescriptor descriptor, Dictionary<string, object?> given, TensorDict state, bool training, int seed)
    {
        Descriptor = descriptor; _given = given; State = state; Training = training; Seed = seed;
    }

    /// <summary>The layer kind these arguments are for.</summary>
    public LayerDescriptor Descriptor { get; }

    /// <summary>The own tensors to build with (absent ones are made with PyTorch's initialisation).</summary>
    public TensorDict State { get; }

    /// <summary>The training flag to build with.</summary>
    public bool Training { get; }

    /// <summary>The seed a <see cref="LayerDescriptor.Seeded"/> kind draws the tensors <see cref="State"/> lacks from.</summary>
    public int Seed { get; }

    /// <summary>Whether the argument was given (rather than left at its default).</summary>
    public bool Has(string name) => _given.ContainsKey(name);

    /// <summary>An <see cref="LayerArgumentKind.Int"/> argument.</summary>
    public int Int(string name) => (int)Value(name, LayerArgumentKind.Int)!;

    /// <summary>An <see cref="LayerArgumentKind.OptionalInt"/> argument (null for None).</summary>
    public int? OptionalInt(string name) => (int?)Value(name, LayerArgumentKind.OptionalInt);

    /// <summary>A <see cref="LayerArgumentKind.Bool"/> argument.</summary>
    public bool Bool(string name) => (bool)Value(name, LayerArgumentKind.Bool)!;

    /// <summary>A <see cref="LayerArgumentKind.Double"/> argument.</summary>
    public double Double(string name) => (double)Value(name, LayerArgumentKind.Double)!;

    /// <summary>An <see cref="LayerArgumentKind.OptionalDouble"/> argument (null for None).</summary>
    public double? OptionalDouble(string name) => (double?)Value(name, LayerArgumentKind.OptionalDouble);

    /// <summary>A <see cref="LayerArgumentKind.Size"/> argument: one entry for PyTorch's integer form.</summary>
    public int[] Size(string name) => (int[])Value(name, LayerArgumentKind.Size)!;

    /// <summary>An <see cref="LayerArgumentKind.OptionalSize"/> argument (null for None).</summary>
    public int[]? OptionalSize(string name) => (int[]?)Value(name, LayerArgumentKind.OptionalSize);

    /// <summary>A <see cref="LayerArgumentKind.ConvPadding"/> argument.</summary>
    public ConvPadding Padding(string name) => (ConvPadding)Value(name, LayerArgumentKind.ConvPadding)!;

    /// <summary>A <see cref="LayerArgumentKind.PaddingMode"/> argument.</summary>
    public PaddingMode PaddingMode(string name) => (PaddingMode)Value(name, LayerArgumentKind.PaddingMode)!;

    private object? Value(string name, LayerArgumentKind kind)
    {
        // A factory asking for an argument its descriptor does not declare is a bug in the descriptor, not bad input.
        var p = Descriptor.Parameter(name) ?? throw new InvalidOperationException($"{Descriptor.TypeName} declares no argument '{name}'");
        if (p.Kind != kind) throw new InvalidOperationException($"{Descriptor.TypeName} argument '{name}' is declared {p.Kind}, read as {kind}");
        var v = _given.TryGetValue(name, out var given) ? given
            : p.Required ? throw new ArgumentException($"{Descriptor.TypeName} needs the argument '{name}'") : p.Default;
        // Sizes are arrays; a copy keeps the declared defaults and the given values safe from the caller.
        return v is int[] a ? a.Clone() : v;
    }
}
