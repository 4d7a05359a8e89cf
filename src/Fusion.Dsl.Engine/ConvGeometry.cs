using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The sizes of one convolution call, rank-generic: spatial dimensions are normalised to three (depth, height,
/// width) with leading unit dimensions, so Conv1d is a 1×1×L problem and one set of kernels serves every rank.
/// For a forward convolution <see cref="PadLeft"/>/<see cref="PadRight"/> are the total padding applied before a
/// valid convolution (zeros, or the <c>padding_mode</c>, as PyTorch does); for a transposed one both hold <c>padding</c>.
/// <para>
/// A forward convolution reads its input in the <em>phase layout</em>: each channel of the padded input split by stride
/// phase (space-to-depth), sub-image <c>(a, b, c)</c> holding padded positions <c>(i·s₀+a, j·s₁+b, l·s₂+c)</c>. Every tap
/// then reads a contiguous run along the output width whatever the stride, so strided convolutions are unit-stride
/// problems over <see cref="Sub"/>-sized sub-images. With unit stride and no padding the layout is the input itself.
/// </para>
/// </summary>
internal sealed class ConvGeometry
{
    public const int Dims = 3;

    private ConvGeometry(Conv conv, ReadOnlySpan<int> shape)
    {
        Rank = conv.Rank;
        Transposed = conv.Transposed;
        Batch = shape[0];
        InChannels = conv.InChannels;
        OutChannels = conv.OutChannels;
        Groups = conv.Groups;
        Mode = conv.PaddingMode;
        var off = Dims - Rank;
        for (var i = 0; i < Rank; i++)
        {
            In[off + i] = shape[2 + i];
            Kernel[off + i] = conv.KernelSize[i];
            Stride[off + i] = conv.Stride[i];
            Dilation[off + i] = conv.Dilation[i];
            OutputPadding[off + i] = conv.OutputPadding[i];
        }
        var (left, right) = conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan());
        for (var i = 0; i < Rank; i++) { PadLeft[off + i] = left[i]; PadRight[off + i] = right[i]; }

        // Every size is computed in 64 bits and checked before it is stored: the kernels index with 32-bit offsets, so each
        // size they derive must fit, and an absurd argument (a padding of 2^31-1, a dilation of 2^30) must be an error,
        // never a wrapped size.
        for (var i = 0; i < Dims; i++)
        {
            long padded = Transposed ? In[i] : (long)In[i] + PadLeft[i] + PadRight[i];
            long output;
            if (Transposed)
            {
                output = SlidingWindow.ConvTransposeOutput(In[i], Kernel[i], Stride[i], PadLeft[i], PadRight[i], Dilation[i], OutputPadding[i]);
                if (output <= 0)
                    throw new EngineInputException($"input spatial size {Tensor.ShapeString(SpatialIn)} gives a non-positive output size");
            }
            else
            {
                output = SlidingWindow.ConvOutput(In[i], Kernel[i], Stride[i], PadLeft[i], PadRight[i], Dilation[i]);
                if (output <= 0)
                    throw new EngineInputException(
                        $"calculated padded input size per channel {Tensor.ShapeString(SpatialOf(In))} plus padding is smaller than the (dilated) kernel size {Tensor.ShapeString(SpatialOf(DilatedKernel()))}");
                // One output position reads the same taps whatever the stride; unit stride keeps the phase layout small.
                if (output == 1) Stride[i] = 1;
            }
            Padded[i] = Size(padded, "padded input size");
            Out[i] = Size(output, "output size");
        }
        if (!Transposed && Mode != PaddingMode.Zeros) CheckModePadding();
        for (var i = 0; i < Dims; i++) Sub[i] = Transposed ? In[i] : (int)(((long)Padded[i] + Stride[i] - 1) / Stride[i]);
        // The buffers a call uses: the phase layout of the input, the output, and taps reaching across the layout.
        // (The weight's own size, kernel volume times channels, is bounded by the tensor limit already.)
        Size(SaturatingProduct(Batch, InChannels, Padded[0], Padded[1], Padded[2]), "batch x channels x padded input size");
        Size(SaturatingProduct(Batch, OutChannels, Out[0], Out[1], Out[2]), "batch x channels x output size");
        Size(SaturatingProduct(Batch, InChannels, Stride[0], Stride[1], Stride[2], Sub[0], Sub[1], Sub[2]), "the strided input layout");
    }

    /// <summary>The product of non-negative factors, or <see cref="long.MaxValue"/> when it does not fit.</summary>
    private static long SaturatingProduct(params long[] factors)
    {
        long p = 1;
        foreach (var f in factors)
        {
            if (f != 0 && p > long.MaxValue / f) return long.MaxValue;
            p *= f;
        }
        return p;
    }

    /// <summary>A size checked against <see cref="Limits.MaxElements"/>.</summary>
    private static int Size(long value, string what)
        => value <= Limits.MaxElements
            ? (int)value
            : throw new EngineInputException($"{what} would be {value}, over the engine's limit of {Limits.MaxElements} elements");

    public int Rank { get; }
    public bool Transposed { get; }
    public int Batch { get; }
    public int InChannels { get; }
    public int OutChannels { get; }
    public int Groups { get; }
    public PaddingMode Mode { get; }
    public int[] In { get; } = [1, 1, 1];
    public int[] Out { get; } = [1, 1, 1];
    public int[] Padded { get; } = [1, 1, 1];
    public int[] Kernel { get; } = [1, 1, 1];
    public int[] Stride { get; } = [1, 1, 1];
    public int[] Dilation { get; } = [1, 1, 1];
    public int[] PadLeft { get; } = [0, 0, 0];
    public int[] PadRight { get; } = [0, 0, 0];
    public int[] OutputPadding { get; } = [0, 0, 0];
    /// <summary>Size of one stride-phase sub-image of the padded input (the padded size itself for unit stride).</summary>
    public int[] Sub { get; } = [1, 1, 1];

    public int InGroupChannels => InChannels / Groups;
    public int OutGroupChannels => OutChannels / Groups;
    public int KernelVolume => Kernel[0] * Kernel[1] * Kernel[2];
    public int InVolume => In[0] * In[1] * In[2];
    public int OutVolume => Out[0] * Out[1] * Out[2];
    public int PaddedVolume => Padded[0] * Padded[1] * Padded[2];
    public bool NeedsPadding => PadLeft.Any(p => p != 0) || PadRight.Any(p => p != 0);
    public bool UnitStride => Stride.All(s => s == 1);
    public int SubVolume => Sub[0] * Sub[1] * Sub[2];
    public int PhaseCount => Stride[0] * Stride[1] * Stride[2];
    /// <summary>Floats per channel in the phase layout.</summary>
    public int LayoutPlane => PhaseCount * SubVolume;
    /// <summary>Whether the phase layout must be built (otherwise it is the input as given).</summary>
    public bool NeedsLayout => NeedsPadding || !UnitStride;

    /// <summary>Offset, in the phase layout of one channel, of the element tap <c>(kd, kh, kw)</c> reads for output (0, 0, 0).</summary>
    public int TapOffset(int kd, int kh, int kw)
    {
        int td = kd * Dilation[0], th = kh * Dilation[1], tw = kw * Dilation[2];
        var phase = ((td % Stride[0]) * Stride[1] + th % Stride[1]) * Stride[2] + tw % Stride[2];
        return phase * SubVolume + ((td / Stride[0]) * Sub[1] + th / Stride[1]) * Sub[2] + tw / Stride[2];
    }

    /// <summary>The output shape <c>[N, C_out, *spatial]</c> in the module's own rank.</summary>
    public int[] OutputShape => [Batch, OutChannels, .. SpatialOf(Out)];

    private int[] SpatialIn => SpatialOf(In);
    private int[] SpatialPadded => SpatialOf(Padded);
    private int[] SpatialOf(int[] v) => v[(Dims - Rank)..];
    private int[] DilatedKernel() => [.. Enumerable.Range(0, Dims).Select(i => Dilation[i] * (Kernel[i] - 1) + 1)];

    /// <summary>Geometry of <paramref name="conv"/> applied to a batched input of <paramref name="shape"/> (already checked).</summary>
    /// <exception cref="EngineInputException">The input is too small for the kernel, or a padding mode cannot pad it.</exception>
    public static ConvGeometry Create(Conv conv, ReadOnlySpan<int> shape) => new(conv, shape);

    private void CheckModePadding()
    {
        for (var i = Dims - Rank; i < Dims; i++)
        {
            var pad = Math.Max(PadLeft[i], PadRight[i]);
            if (Mode == PaddingMode.Reflect && pad >= In[i])
                throw new EngineInputException($"padding_mode='reflect' needs padding ({pad}) smaller than the input size ({In[i]}) in every dimension");
            if (Mode == PaddingMode.Circular && pad > In[i])
                throw new EngineInputException($"padding_mode='circular' cannot wrap around more than once: padding {pad} > input size {In[i]}");
        }
    }

    /// <summary>Source index for padded position <paramref name="i"/> of a dimension of size <paramref name="n"/>, or -1 for a zero.</summary>
    public static int SourceIndex(int i, int n, PaddingMode mode)
    {
        if ((uint)i < (uint)n) return i;
        return mode switch
        {
            PaddingMode.Zeros => -1,
            PaddingMode.Reflect => i < 0 ? -i : 2 * (n - 1) - i,
            PaddingMode.Replicate => i < 0 ? 0 : n - 1,
            _ => ((i % n) + n) % n,
        };
    }
}

/// <summary>A problem with the input handed to a layer (shape, size); the engine adds the module's path and type.</summary>
internal sealed class EngineInputException(string message, bool unsupported = false) : Exception(message)
{
    /// <summary>The input is fine but asks for an operation the engine does not evaluate (an opaque one).</summary>
    public bool Unsupported { get; } = unsupported;
}
