using System.Runtime.InteropServices;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.Linear</c> and, with ReLU fused, <c>torch.ao.nn.intrinsic.quantized.LinearReLU</c>,
/// as computed by the onednn engine: a quint8 input of shape [..., in_features], a qint8 weight [out_features,
/// in_features] (per tensor or per output channel, zero points 0), a float32 bias, and a quint8 output with the module's
/// scale and zero point. The int32 sum of (x - x_zp)·w is requantized as oneDNN does (see <see cref="OnednnRequantizer"/>).
/// </summary>
public sealed class QuantizedLinear
{
    private const string Name = "quantized Linear";
    private readonly OnednnRequantizer _requantizer;
    private readonly Int8Linear _kernel;

    /// <summary>Creates the module from its quantized weight, bias and output qparams.</summary>
    /// <param name="weight">A qint8 weight [out_features, in_features], per tensor or per channel along axis 0, zero points 0.</param>
    /// <param name="bias">A float32 bias [out_features], or null.</param>
    /// <param name="scale">The output scale (the module's <c>scale</c>): positive and finite.</param>
    /// <param name="zeroPoint">The output zero point (the module's <c>zero_point</c>): 0..255.</param>
    /// <param name="fuseRelu">Whether ReLU is fused (<c>LinearReLU</c>).</param>
    /// <exception cref="ArgumentException">A weight, bias or qparam that does not fit (the message names which).</exception>
    public QuantizedLinear(QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint, bool fuseRelu = false)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Rank != 2)
            throw new ArgumentException($"{Name} takes a weight of shape [out_features, in_features], got rank {weight.Rank}", nameof(weight));
        Limits.RequireArgument(Name, "in_features", weight.Size(1), 1);
        Limits.RequireArgument(Name, "out_features", weight.Size(0), 1);
        _requantizer = new OnednnRequantizer(Name, weight, bias, scale, zeroPoint, fuseRelu);
        _kernel = new Int8Linear(MemoryMarshal.Cast<byte, sbyte>(weight.RawData), weight.Size(0), weight.Size(1));
        Weight = weight;
        Bias = bias;
    }

    /// <summary>The quantized weight [out_features, in_features].</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>The float32 bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>The output scale.</summary>
    public double Scale => _requantizer.Scale;

    /// <summary>The output zero point.</summary>
    public long ZeroPoint => _requantizer.ZeroPoint;

    /// <summary>Whether ReLU is fused.</summary>
    public bool FusedReLU => _requantizer.Relu;

    /// <summary>The number of input features.</summary>
    public int InFeatures => Weight.Size(1);

    /// <summary>The number of output features.</summary>
    public int OutFeatures => Weight.Size(0);

    /// <summary>The module's forward pass.</summary>
    /// <param name="input">A per-tensor quint8 tensor of shape [..., in_features] (rank at least 1).</param>
    /// <returns>A per-tensor quint8 tensor of shape [..., out_features] with the module's scale and zero point.</returns>
    /// <exception cref="ArgumentException">The input is not per-tensor quint8, or its last dimension is not in_features.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, 1);

    /// <summary>The module's forward pass on up to <paramref name="threads"/> cores (the same bits on any number).</summary>
    /// <param name="input">As <see cref="Forward(QuantizedTensor)"/>.</param>
    /// <param name="threads">The cores to use, at least 1.</param>
    /// <exception cref="ArgumentException">As <see cref="Forward(QuantizedTensor)"/>.</exception>
    public QuantizedTensor Forward(QuantizedTensor input, int threads)
    {
        QuantizedChecks.PerTensorInput(input, QuantizedDType.QUInt8, Name);
        if (input.Rank == 0 || input.Size(-1) != InFeatures)
            throw new ArgumentException($"{Name} expects input of shape [..., {InFeatures}], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int k = InFeatures, n = OutFeatures, rows = input.Count / k;
        var shape = (int[])input.RawShape.Clone();
        shape[^1] = n;
        QuantizedChecks.OutputCount(shape, Name);
        // An empty batch has nothing to compute (the kernel takes at least one row).
        var data = rows == 0 ? [] : _kernel.Requantize(input.RawData, (int)input.ZeroPoint, _requantizer.For(input.Scale), threads);
        return QuantizedTensor.Adopt(data, shape, Scale, ZeroPoint, QuantizedDType.QUInt8);
    }
}
