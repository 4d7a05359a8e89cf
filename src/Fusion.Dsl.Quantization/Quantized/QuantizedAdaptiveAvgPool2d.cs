using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>PyTorch's quantized <c>AdaptiveAvgPool2d</c>: each output cell averages the input window
/// [floor(i·H/oh), ceil((i+1)·H/oh)) × [floor(j·W/ow), ceil((j+1)·W/ow)) of a [N, C, H, W] (or [C, H, W]) per-tensor
/// quantized tensor; the output keeps the input's qparams. PyTorch 1.13 runs one of two kernels, which round ties
/// differently, and so does this: when the input's memory is also channels-last contiguous (rank 4 with C = 1 or
/// H = W = 1) its NHWC kernel, q = zp + nearbyint(Σ(q - zp) · (1 / (1 / (float)(1/n)))) in float32; otherwise its NCHW
/// kernel, q = nearbyint(Σq · (float)(1/n)), the zero point never subtracted (n is the window's element count).
/// With 1×1 planes and more than one channel, PyTorch's NHWC kernel writes its result in channels-last order into an
/// output whose strides say NCHW, so the values PyTorch returns are that buffer read as NCHW; this returns the same
/// values (for a 1×1 output, the common global pooling, both orders agree).</summary>
public sealed class QuantizedAdaptiveAvgPool2d
{
    private const string Name = "quantized AdaptiveAvgPool2d";

    /// <summary>Creates the module.</summary>
    /// <param name="outputSize">The output (height, width), each at least 1.</param>
    /// <exception cref="ArgumentException">A size out of range.</exception>
    public QuantizedAdaptiveAvgPool2d((int Height, int Width) outputSize)
    {
        Limits.RequireArguments(Name, "output_size", new[] { outputSize.Height, outputSize.Width }, 1);
        OutputSize = outputSize;
    }

    /// <summary>The output (height, width).</summary>
    public (int Height, int Width) OutputSize { get; }

    /// <summary>The forward pass.</summary>
    /// <param name="input">A per-tensor quantized tensor of rank 3 or 4 with non-empty planes.</param>
    /// <exception cref="ArgumentException">Another rank, a per-channel input or an empty plane.</exception>
    public QuantizedTensor Forward(QuantizedTensor input) => Forward(input, channelsLast: false);

    /// <summary>The forward pass of an input whose PyTorch memory layout is channels-last when
    /// <paramref name="channelsLast"/> (what quantized convolutions return on the onednn engine): PyTorch then runs its
    /// NHWC kernel whatever the shape, and its output is channels-last too, so its values need no relayout.</summary>
    internal QuantizedTensor Forward(QuantizedTensor input, bool channelsLast)
    {
        ArgumentNullException.ThrowIfNull(input);
        QuantizedChecks.PerTensorInput(input, input.DType, Name);
        if (input.Rank is not (3 or 4) || input.Size(-1) == 0 || input.Size(-2) == 0)
            throw new ArgumentException($"{Name} expects non-empty input of shape [N, C, H, W] or [C, H, W], got {Tensor.ShapeString(input.RawShape)}", nameof(input));
        int h = input.Size(-2), w = input.Size(-1), planes = input.Count / (h * w), oh = OutputSize.Height, ow = OutputSize.Width;
        var shape = (int[])input.RawShape.Clone();
        shape[^2] = oh;
        shape[^1] = ow;
        var y = new int[QuantizedChecks.OutputCount(shape, Name)];
        var x = input.IntRepr();
        var (qmin, qmax) = QuantizedTensor.RangeOf(input.DType);
        int zp = (int)input.ZeroPoint;
        bool alsoChannelsLast = input.Rank == 4 && (input.Size(1) == 1 || h * w == 1);
        bool nhwc = alsoChannelsLast || (channelsLast && input.Rank == 4);
        for (int i = 0; i < oh; i++)
        {
            int y0 = (int)((long)i * h / oh), y1 = (int)(((long)(i + 1) * h + oh - 1) / oh);
            for (int j = 0; j < ow; j++)
            {
                int x0 = (int)((long)j * w / ow), x1 = (int)(((long)(j + 1) * w + ow - 1) / ow);
                int n = (y1 - y0) * (x1 - x0);
                float multiplier = (float)(1.0 / n);
                float inverse = 1f / (1f / multiplier);
                for (int p = 0; p < planes; p++)
                {
                    int sum = 0;
                    for (int a = y0; a < y1; a++)
                        for (int b = x0; b < x1; b++) sum += x[(p * h + a) * w + b];
                    y[(p * oh + i) * ow + j] = nhwc
                        ? QuantizedTensor.QuantizeValue(sum - zp * n, inverse, zp, qmin, qmax)
                        : (int)Math.Clamp(MathF.Round(sum * multiplier, MidpointRounding.ToEven), qmin, qmax);
                }
            }
        }
        if (alsoChannelsLast && !channelsLast && input.Size(1) > 1 && oh * ow > 1) y = NhwcIntoContiguous.Apply(y, input.Size(0), input.Size(1), oh * ow);
        return QuantizedTensor.Adopt(y, shape, input.Scale, input.ZeroPoint, input.DType);
    }
}
