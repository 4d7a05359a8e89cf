using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.QFunctional</c>: element-wise <c>add</c>, <c>add_relu</c> and <c>mul</c> of two
/// quantized tensors of one shape and dtype, and <c>cat</c>, each requantized to this module's scale and zero point, as
/// PyTorch 1.13's CPU kernels compute them (the onednn engine runs the same kernels for these operators). Inputs are per
/// tensor; the output has their dtype.
/// </summary>
public sealed class QFunctional
{
    /// <summary>Creates the module with its output qparams (PyTorch's defaults are scale 1.0 and zero point 0).</summary>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, checked against the dtype of each call's inputs.</param>
    /// <exception cref="ArgumentOutOfRangeException">The scale is not positive and finite, or the zero point lies outside both 8-bit ranges.</exception>
    public QFunctional(double scale = 1.0, long zeroPoint = 0)
    {
        QuantizedChecks.Scale(scale, "QFunctional output");
        if (zeroPoint < -128 || zeroPoint > 255)
            throw new ArgumentOutOfRangeException(nameof(zeroPoint), zeroPoint, $"QFunctional output: zero point {zeroPoint} is outside every 8-bit range");
        Scale = scale;
        ZeroPoint = zeroPoint;
    }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary><c>add(a, b)</c>: each input dequantized as <c>(q - zp)·scale</c> in float32, the sum quantized as
    /// <c>torch.quantize_per_tensor</c> does.</summary>
    /// <exception cref="ArgumentException">The inputs differ in shape or dtype, are per channel, or the zero point does not fit their dtype.</exception>
    /// <param name="a">The first input.</param>
    /// <param name="b">The second input, of <paramref name="a"/>'s shape and dtype.</param>
    /// <param name="threads">The cores to share the elements among (each element's bits do not depend on it).</param>
    public QuantizedTensor Add(QuantizedTensor a, QuantizedTensor b, int threads = 1) => AddCore(a, b, relu: false, "add", threads);

    /// <summary><c>add_relu(a, b)</c>: <see cref="Add"/> with negative sums set to 0 before quantizing.</summary>
    /// <exception cref="ArgumentException">As <see cref="Add"/>.</exception>
    /// <param name="a">The first input.</param>
    /// <param name="b">The second input, of <paramref name="a"/>'s shape and dtype.</param>
    /// <param name="threads">The cores to share the elements among (each element's bits do not depend on it).</param>
    public QuantizedTensor AddRelu(QuantizedTensor a, QuantizedTensor b, int threads = 1) => AddCore(a, b, relu: true, "add_relu", threads);

    /// <summary><c>mul(a, b)</c>: the int32 product (a - a_zp)·(b - b_zp) times the float32 multiplier
    /// a_scale·b_scale·(1/scale), rounded half to even, plus the zero point, saturated. The shapes broadcast as
    /// PyTorch's do (the squeeze-excitation of torchvision's mobilenet_v3 multiplies [N, C, H, W] by [N, C, 1, 1]).</summary>
    /// <exception cref="ArgumentException">The shapes do not broadcast, the dtypes differ, an input is per channel, or the zero point does not fit their dtype.</exception>
    public QuantizedTensor Mul(QuantizedTensor a, QuantizedTensor b)
    {
        var (qmin, qmax) = CheckPair(a, b, "mul", broadcast: true);
        var shape = Broadcast.Shape(a.RawShape, b.RawShape)!;
        float multiplier = (float)(a.Scale * b.Scale * (1f / (float)Scale));
        int az = (int)a.ZeroPoint, bz = (int)b.ZeroPoint;
        var y = new int[QuantizedChecks.OutputCount(shape, "mul")];
        var (sa, sb) = (Broadcast.Strides(a.RawShape, shape.Length), Broadcast.Strides(b.RawShape, shape.Length));
        var index = new int[shape.Length];
        for (int i = 0, ia = 0, ib = 0; i < y.Length; i++)
        {
            float v = MathF.Round((float)((a[ia] - az) * (b[ib] - bz)) * multiplier, MidpointRounding.ToEven) + ZeroPoint;
            y[i] = (int)Math.Clamp(v, qmin, qmax);
            for (int d = shape.Length - 1; d >= 0; d--)
            {
                ia += sa[d];
                ib += sb[d];
                if (++index[d] < shape[d]) break;
                ia -= sa[d] * shape[d];
                ib -= sb[d] * shape[d];
                index[d] = 0;
            }
        }
        return QuantizedTensor.Adopt(y, shape, Scale, ZeroPoint, a.DType);
    }

    /// <summary><c>cat(tensors, dim)</c>: the inputs dequantized, concatenated along <paramref name="dim"/> and quantized
    /// to this module's qparams.</summary>
    /// <param name="tensors">At least one per-tensor quantized tensor; all of one dtype and rank, equal in every dimension but <paramref name="dim"/>.</param>
    /// <param name="dim">The dimension to concatenate along, 0..rank-1 (negative counts from the end).</param>
    /// <exception cref="ArgumentException">No tensors, mixed dtypes or ranks, other dimensions that differ, or a dimension out of range.</exception>
    public QuantizedTensor Cat(IReadOnlyList<QuantizedTensor> tensors, int dim = 0)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (tensors.Count == 0) throw new ArgumentException("cat needs at least one tensor", nameof(tensors));
        var first = tensors[0];
        foreach (var t in tensors)
        {
            QuantizedChecks.PerTensorInput(t, first.DType, "cat");
            if (t.Rank != first.Rank)
                throw new ArgumentException($"cat takes tensors of one rank: got {Tensor.ShapeString(first.RawShape)} and {Tensor.ShapeString(t.RawShape)}", nameof(tensors));
        }
        int rank = first.Rank;
        if (dim < -rank || dim >= rank || rank == 0)
            throw new ArgumentOutOfRangeException(nameof(dim), dim, $"cat: dim {dim} is out of range for tensors of rank {rank}");
        int axis = dim < 0 ? dim + rank : dim;
        QuantizedChecks.ZeroPoint(ZeroPoint, first.DType, "cat output");
        var shape = (int[])first.RawShape.Clone();
        long total = 0;
        foreach (var t in tensors)
        {
            for (int d = 0; d < rank; d++)
                if (d != axis && t.RawShape[d] != shape[d])
                    throw new ArgumentException($"cat along dim {axis}: shapes {Tensor.ShapeString(first.RawShape)} and {Tensor.ShapeString(t.RawShape)} differ in dimension {d}", nameof(tensors));
            total += t.RawShape[axis];
        }
        if (total > Limits.MaxElements) throw new ArgumentException($"cat: {total} slices along dim {axis} is over the limit of {Limits.MaxElements}");
        shape[axis] = (int)total;
        var y = new int[QuantizedChecks.OutputCount(shape, "cat")];
        int outer = 1, inner = 1;
        for (int d = 0; d < axis; d++) outer *= shape[d];
        for (int d = axis + 1; d < rank; d++) inner *= shape[d];
        var (qmin, qmax) = QuantizedTensor.RangeOf(first.DType);
        float inverse = 1f / (float)Scale;
        int offset = 0;
        foreach (var t in tensors)
        {
            var x = t.Dequantize().Float32;
            int block = t.RawShape[axis] * inner;
            for (int o = 0; o < outer; o++)
                for (int i = 0; i < block; i++)
                    y[o * (int)total * inner + offset + i] = QuantizedTensor.QuantizeValue(x[o * block + i], inverse, ZeroPoint, qmin, qmax);
            offset += block;
        }
        return QuantizedTensor.Adopt(y, shape, Scale, ZeroPoint, first.DType);
    }

    private QuantizedTensor AddCore(QuantizedTensor a, QuantizedTensor b, bool relu, string op, int threads)
    {
        CheckPair(a, b, op);
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, $"{op}: threads must be at least 1");
        var add = new Engine.Int8Add(a.Scale, (int)a.ZeroPoint, b.Scale, (int)b.ZeroPoint, Scale, ZeroPoint, relu, a.DType == QuantizedDType.QInt8);
        var y = GC.AllocateUninitializedArray<byte>(a.RawData.Length);
        add.Run(a.RawData, b.RawData, y, threads);
        return QuantizedTensor.Adopt(y, (int[])a.RawShape.Clone(), Scale, ZeroPoint, a.DType);
    }

    private (int Min, int Max) CheckPair(QuantizedTensor a, QuantizedTensor b, string op, bool broadcast = false)
    {
        ArgumentNullException.ThrowIfNull(a);
        QuantizedChecks.PerTensorInput(a, a.DType, op);
        QuantizedChecks.PerTensorInput(b, a.DType, op);
        if (broadcast)
        {
            if (Broadcast.Shape(a.RawShape, b.RawShape) is null)
                throw new ArgumentException($"{op}: shapes {Tensor.ShapeString(a.RawShape)} and {Tensor.ShapeString(b.RawShape)} do not broadcast", nameof(b));
        }
        else if (!a.RawShape.AsSpan().SequenceEqual(b.RawShape))
            throw new ArgumentException($"{op} takes two tensors of one shape, got {Tensor.ShapeString(a.RawShape)} and {Tensor.ShapeString(b.RawShape)}", nameof(b));
        QuantizedChecks.ZeroPoint(ZeroPoint, a.DType, op + " output");
        return QuantizedTensor.RangeOf(a.DType);
    }
}
