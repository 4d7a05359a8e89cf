using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// One module of a converted model (what PyTorch's <c>convert</c> swapped in at <see cref="Path"/>): <c>Quantize</c>,
/// <c>DeQuantize</c>, a quantized Conv1d/2d/3d or ConvReLU1d/2d/3d, ConvTranspose1d/2d/3d, BatchNorm2d/3d or BNReLU2d/3d, Linear/LinearReLU, a norm, LeakyReLU, ELU, PReLU, Hardswish or ReLU6, or a <c>QFunctional</c>, with its output
/// scale and zero point (none for <c>DeQuantize</c> and <c>ReLU6</c>) and its quantized weight and float bias where it has them.
/// </summary>
public sealed class QuantizedLayer
{
    private QuantizedLayer(string path, string typeName, double? scale, long? zeroPoint, QuantizedTensor? weight, Tensor? bias, object? module, QuantizedDType? dtype)
    {
        Path = path;
        TypeName = typeName;
        Scale = scale;
        ZeroPoint = zeroPoint;
        Weight = weight;
        Bias = bias;
        Module = module;
        DType = dtype;
    }

    /// <summary>The module's dotted path in the model.</summary>
    public string Path { get; }

    /// <summary>PyTorch's class name of the quantized module: <c>Quantize</c>, <c>DeQuantize</c>, <c>QuantizedConv1d</c>/<c>2d</c>/<c>3d</c>,
    /// <c>QuantizedConvReLU1d</c>/<c>2d</c>/<c>3d</c>, <c>QuantizedConvTranspose1d</c>/<c>2d</c>/<c>3d</c> (PyTorch 1.13's
    /// repr misspells these <c>QuantizedConvTranpose</c>), <c>QuantizedBatchNorm2d</c>/<c>3d</c>, <c>QuantizedBNReLU2d</c>/<c>3d</c>, <c>QuantizedLayerNorm</c>, <c>QuantizedGroupNorm</c>, <c>QuantizedInstanceNorm1d</c>/<c>2d</c>/<c>3d</c>, <c>QuantizedLinear</c>, <c>QuantizedLinearReLU</c>,
    /// <c>QuantizedLeakyReLU</c>, <c>QuantizedELU</c>, <c>QuantizedPReLU</c>, <c>QuantizedHardswish</c>, <c>QuantizedReLU6</c> or <c>QFunctional</c>.</summary>
    public string TypeName { get; }

    /// <summary>The output scale (null for <c>DeQuantize</c> and <c>QuantizedReLU6</c>, which keeps its input's).</summary>
    public double? Scale { get; }

    /// <summary>The output zero point (null for <c>DeQuantize</c> and <c>QuantizedReLU6</c>).</summary>
    public long? ZeroPoint { get; }

    /// <summary>The qint8 weight of a convolution, transposed convolution or Linear, the quint8 slopes of a PReLU, else null.</summary>
    public QuantizedTensor? Weight { get; }

    /// <summary>The float32 bias of a convolution, transposed convolution or Linear that has one, else null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The output dtype of <c>Quantize</c>, else null.</summary>
    public QuantizedDType? DType { get; }

    /// <summary>The runnable module: <see cref="QuantizedConv"/>, <see cref="QuantizedConvTranspose"/>, <see cref="QuantizedBatchNorm"/>, <see cref="QuantizedLayerNorm"/>, <see cref="QuantizedGroupNorm"/>, <see cref="QuantizedLinear"/>, <see cref="QuantizedLeakyReLU"/>, <see cref="QuantizedELU"/>, <see cref="QuantizedPReLU"/>, <see cref="QuantizedHardswish"/>, <see cref="QuantizedReLU6"/>, <see cref="QFunctional"/>, or null.</summary>
    internal object? Module { get; }

    internal static QuantizedLayer Quantize(string path, double scale, long zp, QuantizedDType dtype)
    {
        QuantizedChecks.Output(scale, zp, dtype, $"Quantize '{path}'");
        return new(path, "Quantize", scale, zp, null, null, null, dtype);
    }

    internal static QuantizedLayer DeQuantize(string path) => new(path, "DeQuantize", null, null, null, null, null, null);

    internal static QuantizedLayer Functional(string path, QFunctional f) => new(path, "QFunctional", f.Scale, f.ZeroPoint, null, null, f, null);

    internal static QuantizedLayer Hardswish(string path, QuantizedHardswish h) => new(path, "QuantizedHardswish", h.Scale, h.ZeroPoint, null, null, h, null);

    internal static QuantizedLayer LayerNorm(string path, QuantizedLayerNorm l) => new(path, "QuantizedLayerNorm", l.Scale, l.ZeroPoint, null, null, l, null);

    internal static QuantizedLayer GroupNorm(string path, string typeName, QuantizedGroupNorm g) => new(path, typeName, g.Scale, g.ZeroPoint, null, null, g, null);

    internal static QuantizedLayer LeakyReLU(string path, QuantizedLeakyReLU l) => new(path, "QuantizedLeakyReLU", l.Scale, l.ZeroPoint, null, null, l, null);

    internal static QuantizedLayer PReLU(string path, QuantizedPReLU p) => new(path, "QuantizedPReLU", p.Scale, p.ZeroPoint, p.Weight, null, p, null);

    internal static QuantizedLayer ELU(string path, QuantizedELU e) => new(path, "QuantizedELU", e.Scale, e.ZeroPoint, null, null, e, null);

    internal static QuantizedLayer ReLU6(string path) => new(path, "QuantizedReLU6", null, null, null, null, new QuantizedReLU6(), null);

    internal static QuantizedLayer Conv(string path, QuantizedConv c) => new(path, c.TypeName, c.Scale, c.ZeroPoint, c.Weight, c.Bias, c, null);

    internal static QuantizedLayer ConvTranspose(string path, QuantizedConvTranspose c) => new(path, c.TypeName, c.Scale, c.ZeroPoint, c.Weight, c.Bias, c, null);

    internal static QuantizedLayer BatchNorm(string path, QuantizedBatchNorm b) => new(path, b.TypeName, b.Scale, b.ZeroPoint, null, null, b, null);

    internal static QuantizedLayer Linear(string path, string typeName, QuantizedLinear l) => new(path, typeName, l.Scale, l.ZeroPoint, l.Weight, l.Bias, l, null);

    /// <inheritdoc/>
    public override string ToString() => Scale is { } s ? $"{Path}: {TypeName}(scale={s}, zero_point={ZeroPoint})" : $"{Path}: {TypeName}()";
}
