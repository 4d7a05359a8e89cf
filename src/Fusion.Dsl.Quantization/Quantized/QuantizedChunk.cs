using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.chunk(x, chunks, dim)</c> on a per-tensor quantized tensor: consecutive pieces of
/// ceil(size / chunks) slices along <see cref="Dim"/> (the last one smaller, and fewer pieces when they run out, as
/// PyTorch gives), each keeping the input's qparams.</summary>
public sealed class QuantizedChunk
{
    /// <summary>Creates the module.</summary>
    /// <param name="chunks">How many pieces at most: positive.</param>
    /// <param name="dim">The dimension to cut (negative counts from the end).</param>
    /// <exception cref="ArgumentOutOfRangeException">A chunk count below 1.</exception>
    public QuantizedChunk(int chunks, int dim = 0)
    {
        if (chunks < 1) throw new ArgumentOutOfRangeException(nameof(chunks), chunks, "chunk expects at least 1 chunk");
        Chunks = chunks;
        Dim = dim;
    }

    /// <summary>How many pieces at most.</summary>
    public int Chunks { get; }

    /// <summary>The dimension cut, as given.</summary>
    public int Dim { get; }

    /// <summary>The forward pass.</summary>
    /// <exception cref="ArgumentException">A per-channel input, a rank-0 input or a dimension out of range.</exception>
    public IReadOnlyList<QuantizedTensor> Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized chunk");
        int rank = input.Rank;
        if (rank == 0 || Dim < -rank || Dim >= rank)
            throw new ArgumentOutOfRangeException(nameof(input), $"chunk: dim {Dim} is out of range for rank {rank}");
        int axis = Dim < 0 ? Dim + rank : Dim, size = input.Size(axis);
        int step = Math.Max(1, (size + Chunks - 1) / Chunks);
        int outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= input.Size(d);
        for (int d = axis + 1; d < rank; d++) inner *= input.Size(d);
        var x = input.IntRepr();
        var pieces = new List<QuantizedTensor>();
        for (int start = 0; start < size || (size == 0 && pieces.Count == 0); start += step)
        {
            int length = Math.Min(step, size - start);
            var shape = (int[])input.RawShape.Clone();
            shape[axis] = length;
            var y = new int[outer * length * inner];
            for (int o = 0; o < outer; o++)
                Array.Copy(x, (o * size + start) * inner, y, o * length * inner, length * inner);
            pieces.Add(QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType));
        }
        return pieces;
    }
}
