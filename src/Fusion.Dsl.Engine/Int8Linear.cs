namespace Fusion.Dsl.Engine;

/// <summary>
/// The integer part of a quantized linear layer (PyTorch's quantized <c>Linear</c>): for rows of unsigned 8-bit
/// activations with zero point <c>z</c> and signed 8-bit weights <c>[out_features, in_features]</c>, the exact int32
/// sums <c>Σ w·(x − z)</c>. The weights are packed once; a call transposes the rows so that each becomes a column of
/// <see cref="Int8Gemm"/>'s activations, and transposes the sums back. Requantizing them is the caller's.
/// </summary>
public sealed class Int8Linear
{
    private readonly Int8Weights _weights;

    /// <summary>Packs the weights.</summary>
    /// <param name="weights">Row-major <c>[out_features, in_features]</c> signed 8-bit weights.</param>
    /// <param name="outFeatures">out_features, at least 1.</param>
    /// <param name="inFeatures">in_features, at least 1.</param>
    /// <exception cref="ArgumentException">A size is not positive, or the span does not hold exactly out·in weights.</exception>
    public Int8Linear(ReadOnlySpan<sbyte> weights, int outFeatures, int inFeatures)
        => _weights = Int8Weights.Pack(weights, outFeatures, inFeatures);

    /// <summary>out_features.</summary>
    public int OutFeatures => _weights.Rows;

    /// <summary>in_features.</summary>
    public int InFeatures => _weights.Depth;

    /// <summary>The int32 sums <c>[rows, out_features]</c> of the activations <paramref name="input"/>
    /// (<c>[rows, in_features]</c>, row-major) of zero point <paramref name="zeroPoint"/>, on up to
    /// <paramref name="threads"/> cores.</summary>
    /// <exception cref="ArgumentException">The input's length is not a positive multiple of in_features, the output would
    /// exceed an array, or the zero point is not a byte.</exception>
    public int[] Accumulate(byte[] input, int zeroPoint, int threads = 1)
    {
        var (columns, rows) = Columns(input);
        var sums = new int[rows * OutFeatures];
        Int8Gemm.Run(_weights, columns, 0, rows, zeroPoint, sums, 0, threads);
        return Transpose(sums, OutFeatures, rows);
    }

    /// <summary>The requantized outputs <c>[rows, out_features]</c> as unsigned bytes: the sums of
    /// <see cref="Accumulate"/>, each requantized by <paramref name="requantization"/> for its output feature as it
    /// leaves the GEMM's registers.</summary>
    /// <exception cref="ArgumentException">As <see cref="Accumulate"/>, or the requantization has another channel count.</exception>
    public byte[] Requantize(byte[] input, int zeroPoint, Int8Requantization requantization, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(requantization);
        if (requantization.Channels != OutFeatures)
            throw new ArgumentException($"the requantization has {requantization.Channels} channels, the layer {OutFeatures} outputs");
        var (columns, rows) = Columns(input);
        var outputs = new byte[rows * OutFeatures];
        Int8Gemm.Run(_weights, columns, 0, rows, zeroPoint, requantization, 0, outputs, 0, threads);
        return Transpose(outputs, OutFeatures, rows);
    }

    /// <summary>The rows as GEMM columns: <c>[in_features, rows]</c>.</summary>
    private (byte[] Columns, int Rows) Columns(byte[] input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Length == 0 || input.Length % InFeatures != 0)
            throw new ArgumentException($"{input.Length} activations are not rows of {InFeatures} features");
        var rows = input.Length / InFeatures;
        if ((long)rows * OutFeatures > Array.MaxLength) throw new ArgumentException($"the output [{rows}, {OutFeatures}] exceeds an array");
        return (rows == 1 ? input : Transpose(input, rows, InFeatures), rows);
    }

    /// <summary><paramref name="source"/> <c>[rows, columns]</c> transposed (itself when it is one row or column).</summary>
    private static T[] Transpose<T>(T[] source, int rows, int columns)
    {
        if (rows == 1 || columns == 1) return source;
        var result = new T[source.Length];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < columns; c++)
                result[c * rows + r] = source[r * columns + c];
        return result;
    }
}
