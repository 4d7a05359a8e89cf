namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>torch.ao.nn.quantized.PReLU</c> (what eager convert makes of an observed <c>nn.PReLU</c>), as PyTorch
/// 1.13's <c>quantized::prelu</c> kernel computes it, in integers: with the weight's quantized 1.0,
/// one = saturate(w_zp + nearbyint(1.0f / w_scale)), each output is
/// saturate(y_zp + lrintf(((max(x, x_zp) − x_zp)·(one − w_zp) + (min(x, x_zp) − x_zp)·(w[c] − w_zp))·m)) with
/// m = x_scale·w_scale·(1 / y_scale) in float32, c the channel (dimension 1) when the weight has more than one element.
/// So a positive input is multiplied by the weight scale's idea of 1.0, which is exactly 1 only when 1 / w_scale is an
/// integer within the dtype: PyTorch's <c>from_float</c> quantizes the weight with an observer that never saw it
/// (scale 1.0, zero point 0), which keeps positive inputs as they are and rounds each slope to an integer (0.25 → 0).
/// </summary>
public sealed class QuantizedPReLU
{
    private const string Name = "quantized PReLU";
    private readonly int[] _weight;

    /// <summary>Creates the module.</summary>
    /// <param name="weight">The quantized slopes [num_parameters], per tensor, of the dtype the inputs will have.</param>
    /// <param name="scale">The output scale: positive and finite.</param>
    /// <param name="zeroPoint">The output zero point, within the weight's dtype.</param>
    /// <exception cref="ArgumentException">A weight that is not per tensor or not of rank 1, a scale that is not positive
    /// and finite, or a zero point outside the dtype.</exception>
    public QuantizedPReLU(QuantizedTensor weight, double scale, long zeroPoint)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.IsPerChannel || weight.Rank != 1 || weight.Count == 0)
            throw new ArgumentException($"{Name} takes a per-tensor quantized weight [num_parameters], got {(weight.IsPerChannel ? "a per-channel one" : $"shape {Tensors.Tensor.ShapeString([.. weight.Dimensions])}")}", nameof(weight));
        QuantizedChecks.Output(scale, zeroPoint, weight.DType, Name);
        Weight = weight;
        Scale = scale;
        ZeroPoint = zeroPoint;
        _weight = weight.IntRepr();
    }

    /// <summary>The quantized slopes [num_parameters] (PyTorch's module keeps them as a plain attribute, outside its state_dict).</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor of the weight's dtype, of rank 1 or more; with more than one
    /// slope, of rank 2 or more with that many channels in dimension 1.</param>
    /// <returns>A tensor of the input's shape and dtype with this module's qparams.</returns>
    /// <exception cref="ArgumentException">The input is per channel, of another dtype, 0-d, or its channels do not match the slopes.</exception>
    public QuantizedTensor Forward(QuantizedTensor input)
    {
        QuantizedChecks.PerTensorInput(input, Weight.DType, Name);
        if (input.Rank == 0) throw new ArgumentException($"{Name}: a 0-d input is not allowed (PyTorch: \"qprelu: zero-dim input tensor is not allowed\")", nameof(input));
        int slopes = _weight.Length, inner = 1;
        if (slopes > 1)
        {
            if (input.Rank < 2 || input.Size(1) != slopes)
                throw new ArgumentException($"{Name} has {slopes} slopes, one per channel, and expects input of shape [N, {slopes}, ...], got {Tensors.Tensor.ShapeString(input.RawShape)}", nameof(input));
            for (int d = 2; d < input.Rank; d++) inner *= input.Size(d);
        }
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        int wZp = (int)Weight.ZeroPoint, xZp = (int)input.ZeroPoint, yZp = (int)ZeroPoint;
        float wScale = (float)Weight.Scale;
        // quantize_val(w_scale, w_zp, 1.0f): the weight's quantized 1.0.
        int one = (int)Math.Clamp(wZp + (long)MathF.Round(1.0f * (1.0f / wScale), MidpointRounding.ToEven), qmin, qmax) - wZp;
        float multiplier = (float)input.Scale * wScale * (1.0f / (float)Scale);
        var x = input.IntRepr();
        var y = new int[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            int v = x[i] - xZp;
            long sum = v >= 0 ? (long)v * one : (long)v * (_weight[i / inner % slopes] - wZp);
            y[i] = (int)Math.Clamp(yZp + (long)MathF.Round(sum * multiplier, MidpointRounding.ToEven), qmin, qmax);
        }
        return QuantizedTensor.Adopt(y, input.Dimensions.ToArray(), Scale, ZeroPoint, input.DType);
    }
}
