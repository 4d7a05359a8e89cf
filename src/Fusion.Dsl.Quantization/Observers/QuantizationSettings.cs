namespace Fusion.Dsl.Quantization;

/// <summary>
/// The options every uniform-quantization observer shares (PyTorch's <c>UniformQuantizationObserverBase</c>): dtype,
/// scheme, <c>reduce_range</c>, an optional custom <c>quant_min</c>/<c>quant_max</c> and <c>eps</c>. The effective
/// range is computed as <c>calculate_qmin_qmax</c> does: the dtype's default (halved with reduce_range), or the custom
/// range (each end floor-halved with reduce_range). Refused: a custom range that does not include 0, is empty, or
/// lies outside the dtype (a qint8 range such as -128..127 with quint8, or 0..255 with qint8); a non-positive or
/// non-finite eps.
/// </summary>
public sealed class QuantizationSettings
{
    /// <summary><c>torch.finfo(torch.float32).eps</c>, 2^-23: the smallest scale an observer returns.</summary>
    public const float Float32Eps = 1.1920929E-07f;

    /// <summary>Creates the settings and resolves the effective quantization range.</summary>
    /// <param name="dtype">The quantized element type.</param>
    /// <param name="scheme">The quantization scheme.</param>
    /// <param name="reduceRange">Whether to drop one bit of range (PyTorch's <c>reduce_range</c>).</param>
    /// <param name="quantMin">A custom lower end of the range; used only together with <paramref name="quantMax"/>.</param>
    /// <param name="quantMax">A custom upper end of the range; used only together with <paramref name="quantMin"/>.</param>
    /// <param name="eps">The smallest scale returned (PyTorch's <c>eps</c>).</param>
    /// <exception cref="ArgumentException">The custom range or eps is invalid (the message names which).</exception>
    public QuantizationSettings(QuantizedDType dtype, QScheme scheme, bool reduceRange = false, int? quantMin = null, int? quantMax = null, float eps = Float32Eps)
    {
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown quantized dtype");
        if (!Enum.IsDefined(scheme)) throw new ArgumentOutOfRangeException(nameof(scheme), scheme, "unknown qscheme");
        if (!(eps > 0f) || !float.IsFinite(eps)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be a positive finite float32");
        DType = dtype;
        Scheme = scheme;
        ReduceRange = reduceRange;
        Eps = eps;
        HasCustomizedRange = quantMin is not null && quantMax is not null;
        if (quantMin is { } lo && quantMax is { } hi)
        {
            // PyTorch's _validate_qmin_qmax and calculate_qmin_qmax's qint8 width check.
            if (!(lo <= 0 && 0 <= hi))
                throw new ArgumentException($"quant_min..quant_max = {lo}..{hi} must include 0", nameof(quantMin));
            if (lo >= hi)
                throw new ArgumentException($"quant_min ({lo}) must be strictly less than quant_max ({hi})", nameof(quantMin));
            var (dmin, dmax) = dtype == QuantizedDType.QUInt8 ? (0, 255) : (-128, 127);
            if (lo < dmin || hi > dmax)
                throw new ArgumentException($"quant_min..quant_max = {lo}..{hi} does not fit {DTypeName(dtype)}, whose range is {dmin}..{dmax}", nameof(quantMin));
            (QuantMin, QuantMax) = reduceRange ? (FloorHalf(lo), FloorHalf(hi)) : (lo, hi);
        }
        else
        {
            (QuantMin, QuantMax) = (dtype, reduceRange) switch
            {
                (QuantizedDType.QInt8, true) => (-64, 63),
                (QuantizedDType.QInt8, false) => (-128, 127),
                (_, true) => (0, 127),
                _ => (0, 255),
            };
        }
    }

    /// <summary>The quantized element type.</summary>
    public QuantizedDType DType { get; }

    /// <summary>The quantization scheme.</summary>
    public QScheme Scheme { get; }

    /// <summary>Whether one bit of range is dropped.</summary>
    public bool ReduceRange { get; }

    /// <summary>Whether a custom quant_min/quant_max was given (it changes quint8's symmetric zero point).</summary>
    public bool HasCustomizedRange { get; }

    /// <summary>The effective lower end of the quantized range.</summary>
    public int QuantMin { get; }

    /// <summary>The effective upper end of the quantized range.</summary>
    public int QuantMax { get; }

    /// <summary>The smallest scale returned.</summary>
    public float Eps { get; }

    /// <summary>Whether the scheme is symmetric (per tensor or per channel).</summary>
    public bool IsSymmetric => Scheme is QScheme.PerTensorSymmetric or QScheme.PerChannelSymmetric;

    /// <summary>Whether the scheme is per channel.</summary>
    public bool IsPerChannel => Scheme is QScheme.PerChannelAffine or QScheme.PerChannelSymmetric;

    /// <summary>PyTorch's name of a dtype, for messages.</summary>
    internal static string DTypeName(QuantizedDType dtype) => dtype == QuantizedDType.QUInt8 ? "torch.quint8" : "torch.qint8";

    private static int FloorHalf(int v) => (int)Math.Floor(v / 2.0);

    /// <summary>Refuses a scheme of the wrong kind and, where PyTorch does, a symmetric quint8 scheme with reduce_range.</summary>
    internal void Require(string observer, bool perChannel, bool refuseSymmetricReducedQUInt8)
    {
        if (IsPerChannel != perChannel)
            throw new ArgumentException($"{observer} supports only {(perChannel ? "per-channel" : "per-tensor")} schemes, not {Scheme}");
        if (refuseSymmetricReducedQUInt8 && IsSymmetric && ReduceRange && DType == QuantizedDType.QUInt8)
            throw new ArgumentException($"{observer} cannot reduce the range of a symmetric scheme for torch.quint8 (PyTorch raises NotImplementedError)");
    }
}
