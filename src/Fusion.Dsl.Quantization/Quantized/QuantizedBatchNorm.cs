using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.BatchNorm2d</c> and <c>BatchNorm3d</c> and, with ReLU fused,
/// <c>torch.ao.nn.intrinsic.quantized.BNReLU2d</c>/<c>BNReLU3d</c> (eval-mode batch norm with the running statistics on a
/// quint8 input [N, C, *spatial] of 2 or 3 spatial dimensions), as PyTorch 1.13's <c>quantized::batch_norm2d</c>/<c>3d</c>
/// computes it: per channel, in float32, inv_sigma = (float)(1 / sqrt(var + (float)eps)),
/// alpha = (float)((inv_sigma·weight)·(x_scale / y_scale)), beta = (float)((bias − mean·inv_sigma·weight) / y_scale), then
/// y = clamp(nearbyint(alpha·(q − x_zp) + beta) + y_zp, 0, 255), max with y_zp when ReLU is fused. PyTorch's vectorised
/// kernel takes alpha·(q − x_zp) + beta as one fused multiply-add; so does this one for every channel (PyTorch's scalar
/// tail for the last few channels may round twice, which changed no integer of the fixtures).
/// </summary>
public sealed class QuantizedBatchNorm
{
    private readonly float[] _weight, _bias, _mean, _var;

    /// <summary>Creates the module from the float module's parameters and running statistics and the output qparams.</summary>
    /// <param name="rank">The number of spatial dimensions: 2 (<c>BatchNorm2d</c>) or 3 (<c>BatchNorm3d</c>).</param>
    /// <param name="weight">The float32 weight (gamma) [C].</param>
    /// <param name="bias">The float32 bias (beta) [C].</param>
    /// <param name="runningMean">The float32 running mean [C].</param>
    /// <param name="runningVar">The float32 running variance [C].</param>
    /// <param name="eps">The epsilon added to the variance: finite and not negative.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point: 0..255.</param>
    /// <param name="fuseRelu">Whether ReLU is fused (<c>BNReLU2d</c>/<c>3d</c>).</param>
    /// <param name="numBatchesTracked">The float module's <c>num_batches_tracked</c>, which PyTorch's quantized module keeps
    /// in its state_dict and never reads.</param>
    /// <exception cref="ArgumentException">A rank other than 2 or 3, a parameter that is not float32 [C], a bad eps or qparam.</exception>
    public QuantizedBatchNorm(int rank, Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar, double eps,
        double scale, long zeroPoint, bool fuseRelu = false, long numBatchesTracked = 0)
    {
        if (rank is not (2 or 3))
            throw new ArgumentException($"PyTorch quantizes BatchNorm2d and BatchNorm3d, not a batch norm over {rank} spatial dimension(s)", nameof(rank));
        Rank = rank;
        FusedReLU = fuseRelu;
        var name = Name;
        ArgumentNullException.ThrowIfNull(weight);
        int channels = weight.Count;
        float[] Vector(Tensor t, string what)
        {
            ArgumentNullException.ThrowIfNull(t, what);
            if (t.DType != DType.Float32 || t.Rank != 1 || t.Count != channels || channels == 0)
                throw new ArgumentException($"{name}: the {what} must be float32 of shape [{Math.Max(channels, 1)}] like the weight, got {t.DType} {Tensor.ShapeString(t.Shape)}", what);
            return t.Float32.ToArray();
        }
        (_weight, _bias, _mean, _var) = (Vector(weight, "weight"), Vector(bias, "bias"), Vector(runningMean, "running_mean"), Vector(runningVar, "running_var"));
        if (!(eps >= 0) || !double.IsFinite(eps)) throw new ArgumentException($"{name}: eps must be finite and not negative, got {eps}", nameof(eps));
        QuantizedChecks.Output(scale, zeroPoint, QuantizedDType.QUInt8, name);
        (Weight, Bias, RunningMean, RunningVar) = (weight, bias, runningMean, runningVar);
        Eps = eps;
        Scale = scale;
        ZeroPoint = zeroPoint;
        NumBatchesTracked = numBatchesTracked;
    }

    /// <summary>The number of spatial dimensions: 2 or 3.</summary>
    public int Rank { get; }

    /// <summary>PyTorch's class name as <see cref="QuantizedLayer.TypeName"/> gives it: <c>QuantizedBatchNorm2d</c>,
    /// <c>QuantizedBNReLU3d</c>, ...</summary>
    public string TypeName => FusedReLU ? $"QuantizedBNReLU{Rank}d" : $"QuantizedBatchNorm{Rank}d";

    /// <summary>Every <see cref="TypeName"/> a quantized batch norm has, for tables keyed by layer type.</summary>
    internal static IReadOnlyList<string> TypeNames { get; } = ["QuantizedBatchNorm2d", "QuantizedBatchNorm3d", "QuantizedBNReLU2d", "QuantizedBNReLU3d"];

    private string Name => FusedReLU ? $"quantized BNReLU{Rank}d" : $"quantized BatchNorm{Rank}d";

    /// <summary>The float32 weight [C].</summary>
    public Tensor Weight { get; }

    /// <summary>The float32 bias [C].</summary>
    public Tensor Bias { get; }

    /// <summary>The float32 running mean [C].</summary>
    public Tensor RunningMean { get; }

    /// <summary>The float32 running variance [C].</summary>
    public Tensor RunningVar { get; }

    /// <summary>The epsilon added to the variance.</summary>
    public double Eps { get; }

    /// <summary>The float module's <c>num_batches_tracked</c> (kept for the state_dict only).</summary>
    public long NumBatchesTracked { get; }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>Whether ReLU is fused.</summary>
    public bool FusedReLU { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quint8 tensor [N, C, *spatial] of rank <see cref="Rank"/> + 2.</param>
    /// <returns>A quint8 tensor of the input's shape with the module's qparams; an input without elements is returned as it
    /// is, with its own qparams, as PyTorch returns its clone.</returns>
    /// <exception cref="ArgumentException">The input is not per-tensor quint8, or not [N, C, *spatial] of the module's rank and channels.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        QuantizedChecks.PerTensorInput(input, QuantizedDType.QUInt8, Name);
        int channels = _weight.Length;
        if (input.Rank != Rank + 2 || input.Size(1) != channels)
            throw new ArgumentException($"{Name} expects input of shape [N, {channels}, {(Rank == 2 ? "H, W" : "D, H, W")}], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        if (input.Count == 0) return input;
        var (alpha, beta) = FusedParameters(input.Scale);
        int plane = input.Count / (input.Size(0) * channels), zpIn = (int)input.ZeroPoint, zpOut = (int)ZeroPoint, floor = FusedReLU ? zpOut : 0;
        var x = input.RawData;
        var y = new byte[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            int c = i / plane % channels;
            float v = MathF.Round(MathF.FusedMultiplyAdd(alpha[c], x[i] - zpIn, beta[c]), MidpointRounding.ToEven);
            // Clamped in float first: a huge alpha·x must saturate, not overflow the conversion.
            y[i] = (byte)Math.Clamp((int)Math.Clamp(v, -1024f, 1024f) + zpOut, floor, 255);
        }
        return QuantizedTensor.Adopt(y, (int[])input.RawShape.Clone(), Scale, ZeroPoint, QuantizedDType.QUInt8);
    }

    /// <summary>PyTorch's <c>compute_fused_params</c>: alpha and beta per channel, in its float32 and float64 steps.</summary>
    private (float[] Alpha, float[] Beta) FusedParameters(double inputScale)
    {
        var alpha = new float[_weight.Length];
        var beta = new float[_weight.Length];
        for (int c = 0; c < alpha.Length; c++)
        {
            float invSigma = (float)(1.0 / MathF.Sqrt(_var[c] + (float)Eps));
            alpha[c] = (float)((double)(invSigma * _weight[c]) * (inputScale / Scale));
            beta[c] = (float)((_bias[c] - _mean[c] * invSigma * _weight[c]) / Scale);
        }
        return (alpha, beta);
    }
}
