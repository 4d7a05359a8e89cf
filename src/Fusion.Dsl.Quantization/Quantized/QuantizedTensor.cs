using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// A quantized tensor as an immutable value (PyTorch's <c>torch.quint8</c>/<c>torch.qint8</c> tensors): 8-bit integer
/// elements, a row-major shape, and either one scale and zero point (per tensor) or one of each per slice along an axis
/// (per channel). <see cref="Quantize(Tensor, double, long, QuantizedDType)"/> and <see cref="Dequantize"/> compute
/// what <c>torch.quantize_per_tensor</c>, <c>torch.quantize_per_channel</c> and <c>.dequantize()</c> do in PyTorch 1.13
/// on x86: <c>q = clamp(zero_point + nearbyint(x * (1f / (float)scale)), qmin, qmax)</c> in float32 (the reciprocal is
/// taken first; dividing instead differs on about 1 in 20 ties), and <c>x = ((float)(q - zero_point)) * (float)scale</c>
/// (per channel: the product taken in float64 and narrowed).
/// Scales are kept as float64, as PyTorch keeps them; the kernels narrow them where PyTorch does.
/// </summary>
public sealed class QuantizedTensor
{
    private readonly byte[] _data;
    private readonly int[] _shape;

    private QuantizedTensor(QuantizedDType dtype, int[] shape, byte[] data, ImmutableArray<double> scales, ImmutableArray<long> zeroPoints, int? axis)
    {
        DType = dtype;
        _shape = shape;
        _data = data;
        Scales = scales;
        ZeroPoints = zeroPoints;
        Axis = axis;
    }

    /// <summary>The element type.</summary>
    public QuantizedDType DType { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public ImmutableArray<int> Dimensions => ImmutableArray.Create(_shape);

    /// <summary>The number of dimensions.</summary>
    public int Rank => _shape.Length;

    /// <summary>The number of elements.</summary>
    public int Count => _data.Length;

    /// <summary>The scales: one for a per-tensor tensor, one per slice along <see cref="Axis"/> for a per-channel one.</summary>
    public ImmutableArray<double> Scales { get; }

    /// <summary>The zero points, one per scale.</summary>
    public ImmutableArray<long> ZeroPoints { get; }

    /// <summary>The channel axis of a per-channel tensor (PyTorch's <c>q_per_channel_axis()</c>), null for a per-tensor one.</summary>
    public int? Axis { get; }

    /// <summary>Whether the tensor has one scale and zero point per channel.</summary>
    public bool IsPerChannel => Axis is not null;

    /// <summary>The scale of a per-tensor tensor (PyTorch's <c>q_scale()</c>).</summary>
    /// <exception cref="InvalidOperationException">The tensor is per channel.</exception>
    public double Scale => IsPerChannel ? throw new InvalidOperationException("a per-channel quantized tensor has no single scale; read Scales") : Scales[0];

    /// <summary>The zero point of a per-tensor tensor (PyTorch's <c>q_zero_point()</c>).</summary>
    /// <exception cref="InvalidOperationException">The tensor is per channel.</exception>
    public long ZeroPoint => IsPerChannel ? throw new InvalidOperationException("a per-channel quantized tensor has no single zero point; read ZeroPoints") : ZeroPoints[0];

    /// <summary>The size of one dimension (negative counts from the end).</summary>
    public int Size(int dim) => _shape[dim < 0 ? dim + _shape.Length : dim];

    /// <summary>The integer value of one element, in row-major order.</summary>
    public int this[int flatIndex] => DType == QuantizedDType.QInt8 ? (sbyte)_data[flatIndex] : _data[flatIndex];

    /// <summary>A copy of the integer values (PyTorch's <c>int_repr()</c>), in row-major order.</summary>
    public int[] IntRepr()
    {
        var values = new int[_data.Length];
        for (int i = 0; i < values.Length; i++) values[i] = this[i];
        return values;
    }

    /// <summary>The smallest and largest value of a dtype: 0..255 for quint8, -128..127 for qint8.</summary>
    public static (int Min, int Max) RangeOf(QuantizedDType dtype) => dtype == QuantizedDType.QUInt8 ? (0, 255) : (-128, 127);

    /// <summary><c>torch.quantize_per_tensor(x, scale, zero_point, dtype)</c>.</summary>
    /// <param name="x">A float32 tensor whose elements are all finite.</param>
    /// <param name="scale">A positive finite scale.</param>
    /// <param name="zeroPoint">A zero point within the dtype's range.</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <exception cref="ArgumentException">A bad scale or zero point, a non-float32 tensor, or a non-finite element (the message names which).</exception>
    public static QuantizedTensor Quantize(Tensor x, double scale, long zeroPoint, QuantizedDType dtype)
        => QuantizeCore(x, new[] { scale }, new[] { zeroPoint }, null, dtype);

    /// <summary><c>torch.quantize_per_channel(x, scales, zero_points, axis, dtype)</c>.</summary>
    /// <param name="x">A float32 tensor whose elements are all finite.</param>
    /// <param name="scales">One positive finite scale per slice along <paramref name="axis"/>.</param>
    /// <param name="zeroPoints">One zero point per scale, each within the dtype's range.</param>
    /// <param name="axis">The channel axis, 0..rank-1 (PyTorch refuses a negative one).</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <exception cref="ArgumentException">Bad qparams, a count that differs from the axis's size, an axis out of range, or a non-finite element.</exception>
    public static QuantizedTensor Quantize(Tensor x, IEnumerable<double> scales, IEnumerable<long> zeroPoints, int axis, QuantizedDType dtype)
    {
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(zeroPoints);
        return QuantizeCore(x, scales.ToArray(), zeroPoints.ToArray(), axis, dtype);
    }

    /// <summary>Quantizes with an observer's answer: per tensor when <paramref name="axis"/> is null (one scale and zero
    /// point), else per channel along it. The float32 scales are widened to float64 exactly.</summary>
    /// <param name="x">A float32 tensor whose elements are all finite.</param>
    /// <param name="qparams">What <see cref="Observer.CalculateQParams"/> returned.</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <param name="axis">The channel axis for per-channel qparams, null for per-tensor ones.</param>
    /// <exception cref="ArgumentException">Several qparams without an axis, or any refusal of the other overloads.</exception>
    public static QuantizedTensor Quantize(Tensor x, QParams qparams, QuantizedDType dtype, int? axis = null)
    {
        ArgumentNullException.ThrowIfNull(qparams);
        if (axis is null && qparams.Scales.Length != 1)
            throw new ArgumentException($"{qparams.Scales.Length} scales need a channel axis; per-tensor quantization takes one scale", nameof(qparams));
        return QuantizeCore(x, qparams.Scales.Select(s => (double)s).ToArray(), qparams.ZeroPoints.ToArray(), axis, dtype);
    }

    /// <summary>A per-tensor quantized tensor from its integer values (<c>torch._make_per_tensor_quantized_tensor</c>).</summary>
    /// <param name="values">The integer values, row-major, each within the dtype's range.</param>
    /// <param name="shape">The dimensions; their product must equal the number of values.</param>
    /// <param name="scale">A positive finite scale.</param>
    /// <param name="zeroPoint">A zero point within the dtype's range.</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <exception cref="ArgumentException">A value or zero point outside the dtype's range, a bad scale, or a shape that does not fit.</exception>
    public static QuantizedTensor FromIntRepr(ReadOnlySpan<int> values, int[] shape, double scale, long zeroPoint, QuantizedDType dtype)
        => FromIntReprCore(values, shape, new[] { scale }, new[] { zeroPoint }, null, dtype);

    /// <summary>A per-channel quantized tensor from its integer values (<c>torch._make_per_channel_quantized_tensor</c>).</summary>
    /// <param name="values">The integer values, row-major, each within the dtype's range.</param>
    /// <param name="shape">The dimensions; their product must equal the number of values.</param>
    /// <param name="scales">One positive finite scale per slice along <paramref name="axis"/>.</param>
    /// <param name="zeroPoints">One zero point per scale, each within the dtype's range.</param>
    /// <param name="axis">The channel axis, 0..rank-1 (PyTorch refuses a negative one).</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <exception cref="ArgumentException">Any value, qparam, axis or shape that does not fit (the message names which).</exception>
    public static QuantizedTensor FromIntRepr(ReadOnlySpan<int> values, int[] shape, IEnumerable<double> scales, IEnumerable<long> zeroPoints, int axis, QuantizedDType dtype)
    {
        ArgumentNullException.ThrowIfNull(scales);
        ArgumentNullException.ThrowIfNull(zeroPoints);
        return FromIntReprCore(values, shape, scales.ToArray(), zeroPoints.ToArray(), axis, dtype);
    }

    /// <summary><c>.dequantize()</c>, element by element: <c>((float)(q - zero_point)) * (float)scale</c> in float32 per
    /// tensor; per channel PyTorch multiplies by the float64 scale and narrows the product, and so does this.</summary>
    public Tensor Dequantize()
    {
        var (inner, channels) = ChannelStride();
        var data = new float[_data.Length];
        if (Axis is null)
        {
            float scale = (float)Scales[0];
            for (int i = 0; i < data.Length; i++) data[i] = (float)(this[i] - ZeroPoints[0]) * scale;
        }
        else
            for (int i = 0; i < data.Length; i++)
            {
                int c = i / inner % channels;
                data[i] = (float)((this[i] - ZeroPoints[c]) * Scales[c]);
            }
        return Tensor.FromFloat32(data, _shape);
    }

    /// <summary>The same elements and qparams viewed with another shape of the same element count (PyTorch's
    /// <c>reshape</c>); a per-channel tensor keeps its axis only when the reshape leaves every dimension up to the axis as it was.</summary>
    /// <exception cref="ArgumentException">The element counts differ, or the reshape moves a per-channel tensor's channels.</exception>
    public QuantizedTensor Reshape(params int[] shape)
    {
        var resolved = QuantizedChecks.Shape(shape, _data.Length, "reshape");
        if (Axis is { } a && (resolved.Length <= a || !resolved.AsSpan(0, a + 1).SequenceEqual(_shape.AsSpan(0, a + 1))))
            throw new ArgumentException($"reshaping a per-channel tensor (axis {a}) from {Tensor.ShapeString(_shape)} to {Tensor.ShapeString(resolved)} would move its channels");
        return new QuantizedTensor(DType, resolved, _data, Scales, ZeroPoints, Axis);
    }

    /// <inheritdoc/>
    public override string ToString()
        => $"QuantizedTensor({DType}, {Tensor.ShapeString(_shape)}, {(IsPerChannel ? $"per-channel axis {Axis}" : $"scale {Scale}, zero point {ZeroPoint}")})";

    /// <summary>The shape, for the kernels of this assembly (not copied: callers only read it).</summary>
    internal int[] RawShape => _shape;

    /// <summary>The stored bytes (quint8 values, or qint8 values in two's complement), for the kernels of this assembly
    /// (not copied: callers only read them).</summary>
    internal byte[] RawData => _data;

    /// <summary>A new tensor taking ownership of <paramref name="values"/>, which the caller has clamped to the dtype's range.</summary>
    internal static QuantizedTensor Adopt(int[] values, int[] shape, double scale, long zeroPoint, QuantizedDType dtype)
    {
        var data = new byte[values.Length];
        for (int i = 0; i < data.Length; i++) data[i] = unchecked((byte)values[i]);
        return new QuantizedTensor(dtype, shape, data, ImmutableArray.Create(scale), ImmutableArray.Create(zeroPoint), null);
    }

    /// <summary>A new per-tensor tensor taking ownership of the stored bytes <paramref name="data"/>.</summary>
    internal static QuantizedTensor Adopt(byte[] data, int[] shape, double scale, long zeroPoint, QuantizedDType dtype)
        => new(dtype, shape, data, ImmutableArray.Create(scale), ImmutableArray.Create(zeroPoint), null);

    /// <summary>The number of elements after the channel axis and the number of channels (1 and 1 per tensor).</summary>
    private (int Inner, int Channels) ChannelStride()
    {
        if (Axis is not { } axis) return (1, 1);
        int inner = 1;
        for (int d = axis + 1; d < _shape.Length; d++) inner *= _shape[d];
        return (inner, _shape[axis]);
    }

    private static QuantizedTensor QuantizeCore(Tensor x, double[] scales, long[] zeroPoints, int? axis, QuantizedDType dtype)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.DType != Tensors.DType.Float32)
            throw new ArgumentException($"only float32 tensors are quantized, not {x.DType}", nameof(x));
        var shape = x.Shape.ToArray();
        var (resolvedAxis, inner, channels) = QuantizedChecks.QParams(scales, zeroPoints, axis, shape, dtype);
        var (qmin, qmax) = RangeOf(dtype);
        var src = x.Float32;
        var data = new byte[src.Length];
        var inverse = scales.Select(s => 1f / (float)s).ToArray();
        for (int i = 0; i < src.Length; i++)
        {
            float v = src[i];
            if (!float.IsFinite(v))
                throw new ArgumentException($"cannot quantize {v} (element {i}): PyTorch turns it into the dtype's minimum, which means nothing", nameof(x));
            int c = channels == 1 ? 0 : i / inner % channels;
            data[i] = unchecked((byte)QuantizeValue(v, inverse[c], zeroPoints[c], qmin, qmax));
        }
        return new QuantizedTensor(dtype, shape, data, ImmutableArray.Create(scales), ImmutableArray.Create(zeroPoints), resolvedAxis);
    }

    /// <summary>PyTorch's scalar <c>quantize_val</c>: <c>zero_point + nearbyint(x * inverse)</c>, the sum in float32 as
    /// C++ converts it, then cast to int64 (a value beyond int64, which only a huge input reaches, becomes int64's
    /// minimum as on x86, hence the dtype's minimum) and clamped.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static int QuantizeValue(float x, float inverse, long zeroPoint, int qmin, int qmax)
    {
        float sum = zeroPoint + MathF.Round(x * inverse, MidpointRounding.ToEven);
        long q = sum >= -9.223372E18f && sum < 9.223372E18f ? (long)sum : long.MinValue;
        return (int)Math.Clamp(q, qmin, qmax);
    }

    private static QuantizedTensor FromIntReprCore(ReadOnlySpan<int> values, int[] shape, double[] scales, long[] zeroPoints, int? axis, QuantizedDType dtype)
    {
        var resolved = QuantizedChecks.Shape(shape, values.Length, "a quantized tensor");
        var (resolvedAxis, _, _) = QuantizedChecks.QParams(scales, zeroPoints, axis, resolved, dtype);
        var (qmin, qmax) = RangeOf(dtype);
        var data = new byte[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            if (values[i] < qmin || values[i] > qmax)
                throw new ArgumentException($"value {values[i]} (element {i}) is outside {QuantizationSettings.DTypeName(dtype)}'s range {qmin}..{qmax}", nameof(values));
            data[i] = unchecked((byte)values[i]);
        }
        return new QuantizedTensor(dtype, resolved, data, ImmutableArray.Create(scales), ImmutableArray.Create(zeroPoints), resolvedAxis);
    }
}
