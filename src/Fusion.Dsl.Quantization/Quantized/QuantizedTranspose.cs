using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's <c>torch.transpose(x, dim0, dim1)</c> followed by <c>.contiguous()</c> on a per-tensor quantized
/// tensor (the channel shuffle of torchvision's shufflenet_v2): the two dimensions swapped, values and qparams kept.</summary>
/// <param name="Dim0">One dimension (negative counts from the end).</param>
/// <param name="Dim1">The other.</param>
public sealed record QuantizedTranspose(int Dim0, int Dim1)
{
    /// <summary>The forward pass.</summary>
    /// <exception cref="ArgumentException">A per-channel input or a dimension out of range.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, "quantized transpose");
        int rank = input.Rank;
        int Axis(int d) => d >= -rank && d < rank ? (d < 0 ? d + rank : d)
            : throw new ArgumentOutOfRangeException(nameof(input), $"transpose: dim {d} is out of range for rank {rank}");
        int a = Axis(Dim0), b = Axis(Dim1);
        var shape = (int[])input.RawShape.Clone();
        (shape[a], shape[b]) = (shape[b], shape[a]);
        // Strides of the input, read in the output's index order.
        var strides = new int[rank];
        for (int d = rank - 1, s = 1; d >= 0; s *= input.RawShape[d], d--) strides[d] = s;
        (strides[a], strides[b]) = (strides[b], strides[a]);
        var x = input.IntRepr();
        var y = new int[x.Length];
        var index = new int[rank];
        for (int i = 0, source = 0; i < y.Length; i++)
        {
            y[i] = x[source];
            for (int d = rank - 1; d >= 0; d--)
            {
                source += strides[d];
                if (++index[d] < shape[d]) break;
                source -= strides[d] * shape[d];
                index[d] = 0;
            }
        }
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }
}
