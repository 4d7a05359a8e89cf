using System.Collections.Immutable;

namespace Fusion.Dsl.Layers;

/// <summary>The kind of value a layer's constructor argument takes, and so the .NET value <see cref="LayerArguments"/> gives for it.</summary>
public enum LayerArgumentKind
{
    /// <summary>An integer (<see cref="int"/>).</summary>
    Int,
    /// <summary>A boolean (<see cref="bool"/>).</summary>
    Bool,
    /// <summary>A floating-point number (<see cref="double"/>).</summary>
    Double,
    /// <summary>A floating-point number or None (<see cref="Nullable{Double}"/>).</summary>
    OptionalDouble,
    /// <summary>An integer or None (<see cref="Nullable{Int32}"/>).</summary>
    OptionalInt,
    /// <summary>An integer or a list of integers, PyTorch's <c>_ntuple</c> sizes (an <see cref="int"/> array, one entry for the integer form).</summary>
    Size,
    /// <summary>A size (see <see cref="Size"/>) or None.</summary>
    OptionalSize,
    /// <summary>A convolution's padding: sizes, <c>"same"</c> or <c>"valid"</c> (<see cref="Layers.ConvPadding"/>).</summary>
    ConvPadding,
    /// <summary>A convolution's <c>padding_mode</c>: <c>"zeros"</c>, <c>"reflect"</c>, <c>"replicate"</c> or <c>"circular"</c> (<see cref="Layers.PaddingMode"/>).</summary>
    PaddingMode,
}

/// <summary>
/// One constructor argument of a layer kind, under PyTorch's name, with PyTorch's default. An argument this project reads
/// but does not implement beyond its default (<c>MaxPool2d</c>'s <c>return_indices</c>) is <see cref="Unsupported"/>: accepted
/// with the default value only, and not written.
/// </summary>
public sealed class LayerParameter
{
    private LayerParameter(string name, LayerArgumentKind kind, bool required, object? fallback, string? unsupported)
    {
        Name = name; Kind = kind; Required = required; Unsupported = unsupported;
        // Defaults are written as C# literals (0 for a size); stored as the value a given argument converts to.
        Default = fallback is null ? null : Convert(fallback, "the default of");
    }

    /// <summary>PyTorch's name of the argument (<c>kernel_size</c>).</summary>
    public string Name { get; }

    /// <summary>What kind of value it takes.</summary>
    public LayerArgumentKind Kind { get; }

    /// <summary>Whether the constructor needs it (PyTorch has no default).</summary>
    public bool Required { get; }

    /// <summary>PyTorch's default, as the .NET value of <see cref="Kind"/> (null for a required argument and for None).</summary>
    public object? Default { get; }

    /// <summary>Why only the default is accepted, or null when every valid value is.</summary>
    public string? Unsupported { get; }

    /// <summary>Whether the module keeps it (it is among <see cref="Algebra.Module.Arguments"/>, the model format writes it and the
    /// Python exporter sends it): every argument but an <see cref="Unsupported"/> one.</summary>
    public bool Written => Unsupported is null;

    internal static LayerParameter Need(string name, LayerArgumentKind kind) => new(name, kind, true, null, null);

    internal static LayerParameter Opt(string name, LayerArgumentKind kind, object? fallback) => new(name, kind, false, fallback, null);

    internal static LayerParameter Only(string name, LayerArgumentKind kind, object? fallback, string why) => new(name, kind, false, fallback, why);

    /// <summary>
    /// <paramref name="value"/> as the .NET value of <see cref="Kind"/>: integers as <see cref="int"/> (a <see cref="long"/> in range
    /// is accepted), sizes as an <see cref="int"/> array from an integer or a sequence of them, padding and padding mode also from
    /// PyTorch's strings.
    /// </summary>
    /// <exception cref="ArgumentException">The value is not of this kind.</exception>
    public object? Convert(object? value, string typeName)
    {
        string Wrong(string expected) => $"{typeName} argument '{Name}' must be {expected}, got {Describe(value)}";
        switch (Kind)
        {
            case LayerArgumentKind.Int: return AsInt(value) ?? throw new ArgumentException(Wrong("an integer"));
            case LayerArgumentKind.OptionalInt: return value is null ? null : AsInt(value) ?? throw new ArgumentException(Wrong("an integer or None"));
            case LayerArgumentKind.Bool: return value as bool? ?? throw new ArgumentException(Wrong("a boolean"));
            case LayerArgumentKind.Double: return AsDouble(value) ?? throw new ArgumentException(Wrong("a number"));
            case LayerArgumentKind.OptionalDouble: return value is null ? null : AsDouble(value) ?? throw new ArgumentException(Wrong("a number or None"));
            case LayerArgumentKind.Size: return AsSize(value) ?? throw new ArgumentException(Wrong("an integer or a non-empty list of integers"));
            case LayerArgumentKind.OptionalSize: return value is null ? null : AsSize(value) ?? throw new ArgumentException(Wrong("an integer, a non-empty list of integers or None"));
            case LayerArgumentKind.ConvPadding:
                return value switch
                {
                    ConvPadding p => p,
                    "same" => ConvPadding.Same,
                    "valid" => ConvPadding.Valid,
                    _ => AsSize(value) is { } amounts ? ConvPadding.Explicit(amounts) : throw new ArgumentException(Wrong("a list of integers, \"same\" or \"valid\"")),
                };
            case LayerArgumentKind.PaddingMode:
                return value switch
                {
                    PaddingMode m => m,
                    "zeros" => PaddingMode.Zeros,
                    "reflect" => PaddingMode.Reflect,
                    "replicate" => PaddingMode.Replicate,
                    "circular" => PaddingMode.Circular,
                    _ => throw new ArgumentException(Wrong("'zeros', 'reflect', 'replicate' or 'circular'")),
                };
            default:
                throw new InvalidOperationException($"argument kind {Kind} has no conversion");
        }
    }

    private static int? AsInt(object? v) => v switch
    {
        int i => i,
        long l when l is >= int.MinValue and <= int.MaxValue => (int)l,
        _ => null,
    };

    private static double? AsDouble(object? v) => v switch
    {
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        _ => null,
    };

    private static int[]? AsSize(object? v)
    {
        if (AsInt(v) is { } one) return [one];
        if (v is not System.Collections.IEnumerable items || v is string) return null;
        var list = new List<int>();
        foreach (var x in items)
            if (AsInt(x) is { } i) list.Add(i);
            else return null;
        return list.Count > 0 ? [.. list] : null;
    }

    private static string Describe(object? v) => v switch
    {
        null => "None",
        string s => $"\"{s}\"",
        System.Collections.IEnumerable e => "[" + string.Join(", ", e.Cast<object?>().Select(Describe)) + "]",
        _ => $"{v.GetType().Name} {v}",
    };

    /// <summary>Whether two values of this kind are the same (sizes element-wise).</summary>
    internal static bool Same(object? a, object? b) => (a, b) switch
    {
        (int[] x, int[] y) => x.AsSpan().SequenceEqual(y),
        (ImmutableArray<int> x, ImmutableArray<int> y) => x.SequenceEqual(y),
        _ => Equals(a, b),
    };
}
