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
        ArgumentNullException.ThrowIfNull(input);
        if (input.Length == 0 || input.Length % InFeatures != 0)
            throw new ArgumentException($"{input.Length} activations are not rows of {InFeatures} features");
        var rows = input.Length / InFeatures;
        if ((long)rows * OutFeatures > Array.MaxLength) throw new ArgumentException($"the output [{rows}, {OutFeatures}] exceeds an array");
        var columns = new byte[input.Length];
        for (var r = 0; r < rows; r++)
            for (var k = 0; k < InFeatures; k++)
                columns[k * rows + r] = input[r * InFeatures + k];
        var sums = new int[rows * OutFeatures];
        Int8Gemm.Run(_weights, columns, 0, rows, zeroPoint, sums, 0, threads);
        if (rows == 1) return sums;
        var output = new int[sums.Length];
        for (var o = 0; o < OutFeatures; o++)
            for (var r = 0; r < rows; r++)
                output[r * OutFeatures + o] = sums[o * rows + r];
        return output;
    }
}
