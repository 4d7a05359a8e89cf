namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>Flatten</c> (<c>torch.flatten(x, start_dim, end_dim)</c>) on a quantized tensor: the dimensions
/// from start_dim to end_dim merged into one; values and qparams are kept.</summary>
public sealed class QuantizedFlatten
{
    /// <summary>Creates the module (PyTorch's <c>nn.Flatten</c> defaults: 1 and -1).</summary>
    /// <param name="startDim">The first dimension to merge (negative counts from the end).</param>
    /// <param name="endDim">The last dimension to merge (negative counts from the end).</param>
    public QuantizedFlatten(int startDim = 1, int endDim = -1)
    {
        StartDim = startDim;
        EndDim = endDim;
    }

    /// <summary>The first dimension merged.</summary>
    public int StartDim { get; }

    /// <summary>The last dimension merged.</summary>
    public int EndDim { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor (a per-channel one keeps its axis only if it lies before start_dim).</param>
    /// <exception cref="ArgumentException">A dimension out of range, start_dim after end_dim, or a per-channel axis inside the merged dimensions.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int rank = Math.Max(input.Rank, 1);
        int start = StartDim < 0 ? StartDim + rank : StartDim, end = EndDim < 0 ? EndDim + rank : EndDim;
        if (start < 0 || start >= rank || end < 0 || end >= rank)
            throw new ArgumentOutOfRangeException(nameof(input), $"flatten: start_dim {StartDim} or end_dim {EndDim} is out of range for rank {input.Rank}");
        if (start > end)
            throw new ArgumentException($"flatten: start_dim {StartDim} comes after end_dim {EndDim}");
        if (input.Rank == 0) return input.Reshape(1);
        var shape = new List<int>();
        for (int d = 0; d < start; d++) shape.Add(input.Size(d));
        int merged = 1;
        for (int d = start; d <= end; d++) merged *= input.Size(d);
        shape.Add(merged);
        for (int d = end + 1; d < input.Rank; d++) shape.Add(input.Size(d));
        return input.Reshape(shape.ToArray());
    }
}
