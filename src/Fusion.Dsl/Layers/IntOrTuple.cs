using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// PyTorch's "int or tuple" size argument (<c>kernel_size</c>, <c>stride</c>, <c>padding</c>, <c>dilation</c>,
/// <c>output_size</c>): <c>kernelSize: 3</c> or <c>kernelSize: (3, 1)</c>. The form is kept as given, because PyTorch
/// keeps it too (a pool built with <c>kernel_size=3</c> prints and serialises as <c>3</c>, not <c>(3, 3)</c>); the layer
/// broadcasts a single value to every spatial dimension. Values are not checked here: the layer's constructor does that.
/// </summary>
public readonly struct IntOrTuple : IEquatable<IntOrTuple>
{
    private readonly ImmutableArray<int> _values;

    private IntOrTuple(ImmutableArray<int> values) => _values = values;

    /// <summary>The values as given: one entry for the int form, one per dimension for the tuple form.</summary>
    public ImmutableArray<int> Values => _values.IsDefault ? [] : _values;

    /// <summary>Whether the argument was a single int (PyTorch's <c>kernel_size=3</c>).</summary>
    public bool IsScalar => Values.Length == 1;

    /// <summary>An argument of any length (a tuple of 1, 2 or 3 values is what the layers accept).</summary>
    public static IntOrTuple Of(params int[] values) => new([.. values ?? throw new ArgumentNullException(nameof(values))]);

    /// <summary>The int form: <c>3</c>.</summary>
    public static implicit operator IntOrTuple(int value) => new([value]);
    /// <summary>A pair: <c>(3, 1)</c>.</summary>
    public static implicit operator IntOrTuple((int, int) t) => new([t.Item1, t.Item2]);
    /// <summary>A triple: <c>(3, 3, 1)</c>.</summary>
    public static implicit operator IntOrTuple((int, int, int) t) => new([t.Item1, t.Item2, t.Item3]);
    // F# writes (3, 1) as a System.Tuple, not a ValueTuple; these let an F# tuple convert at a method argument too.
    /// <summary>A pair given as a reference tuple (F#'s <c>(3, 1)</c>).</summary>
    public static implicit operator IntOrTuple(Tuple<int, int> t) => new([t.Item1, t.Item2]);
    /// <summary>A triple given as a reference tuple (F#'s <c>(3, 3, 1)</c>).</summary>
    public static implicit operator IntOrTuple(Tuple<int, int, int> t) => new([t.Item1, t.Item2, t.Item3]);

    /// <summary>The values as an array, the form the layers' <c>Create</c> methods take.</summary>
    public int[] ToArray() => [.. Values];

    /// <inheritdoc />
    public bool Equals(IntOrTuple other) => Values.SequenceEqual(other.Values);
    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is IntOrTuple o && Equals(o);
    /// <inheritdoc />
    public override int GetHashCode() => Values.Aggregate(Values.Length, HashCode.Combine);
    /// <summary>Equality of the values and form.</summary>
    public static bool operator ==(IntOrTuple a, IntOrTuple b) => a.Equals(b);
    /// <summary>Inequality of the values or form.</summary>
    public static bool operator !=(IntOrTuple a, IntOrTuple b) => !a.Equals(b);

    /// <summary>As Python prints it: <c>3</c>, <c>(3, 1)</c>, <c>(3,)</c>.</summary>
    public override string ToString() => IsScalar ? Values[0].ToString(System.Globalization.CultureInfo.InvariantCulture) : ModuleRepr.Tuple(Values);
}
