using System.Collections.Immutable;

namespace Fusion.Dsl.Layers;

/// <summary>How a convolution pads its input borders (PyTorch's <c>padding_mode</c>).</summary>
public enum PaddingMode
{
    /// <summary><c>zeros</c>: pad with zeros (the default).</summary>
    Zeros,
    /// <summary><c>reflect</c>: mirror without repeating the edge.</summary>
    Reflect,
    /// <summary><c>replicate</c>: repeat the edge value.</summary>
    Replicate,
    /// <summary><c>circular</c>: wrap around.</summary>
    Circular,
}

/// <summary>Which form a convolution's <c>padding</c> argument takes.</summary>
public enum PaddingKind
{
    /// <summary>Explicit per-dimension amounts.</summary>
    Explicit,
    /// <summary><c>padding='same'</c>: output has the input's size (stride 1 only).</summary>
    Same,
    /// <summary><c>padding='valid'</c>: no padding.</summary>
    Valid,
}

/// <summary>A convolution's <c>padding</c> argument: explicit amounts per spatial dimension, or <c>same</c> / <c>valid</c>.</summary>
public sealed class ConvPadding : IEquatable<ConvPadding>
{
    private ConvPadding(PaddingKind kind, ImmutableArray<int> amounts) { Kind = kind; Amounts = amounts; }

    /// <summary>The form of the argument.</summary>
    public PaddingKind Kind { get; }

    /// <summary>Per-dimension amounts for <see cref="PaddingKind.Explicit"/>; empty otherwise.</summary>
    public ImmutableArray<int> Amounts { get; }

    /// <summary><c>padding='same'</c>.</summary>
    public static ConvPadding Same { get; } = new(PaddingKind.Same, ImmutableArray<int>.Empty);

    /// <summary><c>padding='valid'</c>.</summary>
    public static ConvPadding Valid { get; } = new(PaddingKind.Valid, ImmutableArray<int>.Empty);

    /// <summary>Explicit amounts, one per spatial dimension (non-negative).</summary>
    /// <exception cref="ArgumentException">An amount is negative.</exception>
    public static ConvPadding Explicit(params int[] amounts)
    {
        if (amounts.Any(a => a < 0)) throw new ArgumentException($"padding must be non-negative, got ({string.Join(", ", amounts)})");
        return new(PaddingKind.Explicit, amounts.ToImmutableArray());
    }

    /// <summary>The same amount on every spatial dimension, as PyTorch's <c>padding=1</c>.</summary>
    public static implicit operator ConvPadding(int amount) => Explicit(amount);

    /// <summary>Per-dimension amounts, as PyTorch's <c>padding=(0, 1)</c>.</summary>
    public static implicit operator ConvPadding((int, int) amounts) => Explicit(amounts.Item1, amounts.Item2);

    /// <summary>Per-dimension amounts for a 3-d convolution, as PyTorch's <c>padding=(0, 1, 1)</c>.</summary>
    public static implicit operator ConvPadding((int, int, int) amounts) => Explicit(amounts.Item1, amounts.Item2, amounts.Item3);

    // F# writes (0, 1) as a System.Tuple; these let an F# tuple convert at a method argument too.
    /// <summary>Per-dimension amounts given as a reference tuple (F#'s <c>(0, 1)</c>).</summary>
    public static implicit operator ConvPadding(Tuple<int, int> amounts) => Explicit(amounts.Item1, amounts.Item2);

    /// <summary>Per-dimension amounts given as a reference tuple (F#'s <c>(0, 1, 1)</c>).</summary>
    public static implicit operator ConvPadding(Tuple<int, int, int> amounts) => Explicit(amounts.Item1, amounts.Item2, amounts.Item3);

    /// <summary>Explicit amounts from an int-or-tuple argument.</summary>
    public static implicit operator ConvPadding(IntOrTuple amounts) => Explicit(amounts.ToArray());

    /// <summary><c>"same"</c> or <c>"valid"</c>, as PyTorch's string form of <c>padding</c>.</summary>
    /// <exception cref="ArgumentException">Any other string.</exception>
    public static implicit operator ConvPadding(string mode) => Parse(mode);

    /// <summary>Parses PyTorch's string padding: <c>same</c> or <c>valid</c>.</summary>
    /// <exception cref="ArgumentException">Any other string.</exception>
    public static ConvPadding Parse(string mode) => mode switch
    {
        "same" => Same,
        "valid" => Valid,
        _ => throw new ArgumentException($"padding must be 'same', 'valid' or amounts, got '{mode}'"),
    };

    /// <summary>The amount before (and after) each spatial dimension for a kernel, dilation and stride;
    /// for <c>same</c> the left side of PyTorch's split (total // 2; the extra goes right).</summary>
    public (int[] Left, int[] Right) Resolve(ReadOnlySpan<int> kernel, ReadOnlySpan<int> dilation)
    {
        var n = kernel.Length;
        var left = new int[n];
        var right = new int[n];
        for (var i = 0; i < n; i++)
        {
            switch (Kind)
            {
                case PaddingKind.Explicit: left[i] = right[i] = Amounts[i]; break;
                case PaddingKind.Valid: break;
                case PaddingKind.Same:
                    var total = dilation[i] * (kernel[i] - 1);
                    left[i] = total / 2;
                    right[i] = total - left[i];
                    break;
            }
        }
        return (left, right);
    }

    /// <summary>The argument as PyTorch writes it: a tuple, or the string.</summary>
    public object ToArgument() => Kind switch
    {
        PaddingKind.Same => "same",
        PaddingKind.Valid => "valid",
        _ => Amounts,
    };

    /// <inheritdoc />
    public bool Equals(ConvPadding? other) => other is not null && other.Kind == Kind && other.Amounts.SequenceEqual(Amounts);
    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as ConvPadding);
    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Kind, Amounts.Length);
    /// <inheritdoc />
    public override string ToString() => Kind == PaddingKind.Explicit ? "(" + string.Join(", ", Amounts) + ")" : Kind.ToString().ToLowerInvariant();
}
