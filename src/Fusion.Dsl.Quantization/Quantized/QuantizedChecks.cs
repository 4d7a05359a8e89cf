using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>The checks quantized tensors and modules apply where a value enters: shapes within <see cref="Limits"/>,
/// scales positive and finite, zero points within the dtype, per-channel counts matching their axis.</summary>
internal static class QuantizedChecks
{
    /// <summary>A copy of <paramref name="shape"/>, refused when a dimension is negative, the count is over
    /// <see cref="Limits.MaxElements"/>, or it differs from <paramref name="count"/>.</summary>
    public static int[] Shape(int[] shape, int count, string what)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (Limits.ElementCount(shape) is not { } n)
            throw new ArgumentException($"{what}: shape {Tensor.ShapeString(shape)} has a negative dimension or more than {Limits.MaxElements} elements", nameof(shape));
        if (n != count)
            throw new ArgumentException($"{what}: shape {Tensor.ShapeString(shape)} holds {n} elements, not {count}", nameof(shape));
        return (int[])shape.Clone();
    }

    /// <summary>Refuses a scale that is not positive and finite; returns it.</summary>
    public static double Scale(double scale, string what)
    {
        if (!(scale > 0) || !double.IsFinite(scale) || !float.IsFinite((float)scale) || (float)scale == 0f)
            throw new ArgumentOutOfRangeException(nameof(scale), scale, $"{what}: a scale must be positive and finite in float32, got {scale}");
        return scale;
    }

    /// <summary>Refuses a zero point outside the range of <paramref name="dtype"/>.</summary>
    public static void ZeroPoint(long zeroPoint, QuantizedDType dtype, string what)
    {
        var (qmin, qmax) = QuantizedTensor.RangeOf(dtype);
        if (zeroPoint < qmin || zeroPoint > qmax)
            throw new ArgumentOutOfRangeException(nameof(zeroPoint), zeroPoint, $"{what}: zero point {zeroPoint} is outside {QuantizationSettings.DTypeName(dtype)}'s range {qmin}..{qmax}");
    }

    /// <summary>Checks the qparams of a tensor of <paramref name="shape"/>: one scale and zero point without an axis,
    /// else one per slice along the axis. Returns the axis, the number of elements after
    /// it and the number of channels (1 and 1 per tensor).</summary>
    public static (int? Axis, int Inner, int Channels) QParams(double[] scales, long[] zeroPoints, int? axis, int[] shape, QuantizedDType dtype)
    {
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown quantized dtype");
        if (scales.Length != zeroPoints.Length)
            throw new ArgumentException($"qparams need as many zero points as scales: got {scales.Length} scales and {zeroPoints.Length} zero points");
        foreach (var s in scales) Scale(s, "quantization");
        foreach (var z in zeroPoints) ZeroPoint(z, dtype, "quantization");
        if (axis is not { } a)
        {
            if (scales.Length != 1)
                throw new ArgumentException($"per-tensor quantization takes one scale and zero point, got {scales.Length}");
            return (null, 1, 1);
        }
        if (a < 0 || a >= shape.Length)
            throw new ArgumentOutOfRangeException(nameof(axis), a, $"channel axis {a} is out of range for a tensor of shape {Tensor.ShapeString(shape)} (PyTorch takes 0..rank-1)");
        int resolved = a;
        if (scales.Length != shape[resolved])
            throw new ArgumentException($"per-channel quantization along axis {resolved} of shape {Tensor.ShapeString(shape)} needs {shape[resolved]} scales and zero points, got {scales.Length}");
        int inner = 1;
        for (int d = resolved + 1; d < shape.Length; d++) inner *= shape[d];
        return (resolved, inner, shape[resolved]);
    }

    /// <summary>Refuses an input that is not a per-tensor tensor of <paramref name="dtype"/>.</summary>
    public static void PerTensorInput(QuantizedTensor input, QuantizedDType dtype, string module)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType != dtype)
            throw new ArgumentException($"{module} takes {QuantizationSettings.DTypeName(dtype)} input, not {QuantizationSettings.DTypeName(input.DType)}", nameof(input));
        if (input.IsPerChannel)
            throw new ArgumentException($"{module} takes a per-tensor quantized input, not a per-channel one", nameof(input));
    }

    /// <summary>The output qparams of a module, refused when the scale is not positive and finite or the zero point
    /// lies outside <paramref name="dtype"/>.</summary>
    public static void Output(double scale, long zeroPoint, QuantizedDType dtype, string module)
    {
        Scale(scale, module + " output");
        ZeroPoint(zeroPoint, dtype, module + " output");
    }

    /// <summary>The element count of an output of <paramref name="shape"/>, refused when over <see cref="Limits.MaxElements"/>.</summary>
    public static int OutputCount(int[] shape, string module)
        => Limits.ElementCount(shape) ?? throw new ArgumentException($"{module}: the output shape {Tensor.ShapeString(shape)} is over the limit of {Limits.MaxElements} elements");

    /// <summary>A convolution's geometry, refused when it does not fit: one stride, padding and dilation value (and
    /// each array of <paramref name="more"/>) per spatial dimension, every weight dimension, stride and dilation at
    /// least 1, padding at least 0, groups at least 1.</summary>
    public static void ConvGeometry(string module, int rank, QuantizedTensor weight, int[] stride, int[] padding, int[] dilation, int groups,
        params (int[] Values, string Name)[] more)
    {
        foreach (var (values, what) in new[] { (stride, nameof(stride)), (padding, nameof(padding)), (dilation, nameof(dilation)) }.Concat(more))
            if (values.Length != rank)
                throw new ArgumentException($"{module} takes {rank} {what} value(s), one per spatial dimension, got {values.Length}", what);
        Limits.RequireArguments(module, "weight dimension", weight.Dimensions, 1);
        Limits.RequireArguments(module, "stride", stride, 1);
        Limits.RequireArguments(module, "padding", padding, 0);
        Limits.RequireArguments(module, "dilation", dilation, 1);
        Limits.RequireArgument(module, "groups", groups, 1);
    }

    /// <summary>A rank-1..3 geometry as three values, the missing leading dimensions <paramref name="fill"/> (a 1-d or
    /// 2-d convolution is a 3-d one of depth, and height, 1).</summary>
    public static int[] Pad3(int[] values, int fill) => [.. Enumerable.Repeat(fill, 3 - values.Length), .. values];

    /// <summary>A convolution's input checked: per-tensor quint8 [N, <paramref name="channels"/>, *spatial] of
    /// <paramref name="rank"/> spatial dimensions. Returns the batch and the spatial size as [D, H, W] (D and H 1 where
    /// the convolution has fewer dimensions).</summary>
    public static (int Batch, int[] Size) ConvInput(QuantizedTensor input, string module, int rank, int channels)
    {
        PerTensorInput(input, QuantizedDType.QUInt8, module);
        if (input.Rank != rank + 2 || input.Size(1) != channels)
            throw new ArgumentException($"{module} expects input of shape [N, {channels}, {string.Join(", ", SpatialNames[(3 - rank)..])}], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        return (input.Size(0), Pad3([.. input.Dimensions.Skip(2)], 1));
    }

    /// <summary>The names of a convolution's spatial dimensions, outermost first.</summary>
    public static readonly string[] SpatialNames = ["D", "H", "W"];
}
