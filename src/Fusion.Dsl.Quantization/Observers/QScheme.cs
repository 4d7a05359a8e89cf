namespace Fusion.Dsl.Quantization;

/// <summary>How scales and zero points are chosen (PyTorch's <c>torch.qscheme</c> values an observer accepts).</summary>
public enum QScheme
{
    /// <summary><c>torch.per_tensor_affine</c>: one scale and zero point covering [min(x_min, 0), max(x_max, 0)].</summary>
    PerTensorAffine,
    /// <summary><c>torch.per_tensor_symmetric</c>: one scale from max(|x_min|, x_max); zero point 0 (qint8) or the range's midpoint (quint8).</summary>
    PerTensorSymmetric,
    /// <summary><c>torch.per_channel_affine</c>: the affine rule applied to each channel.</summary>
    PerChannelAffine,
    /// <summary><c>torch.per_channel_symmetric</c>: the symmetric rule applied to each channel.</summary>
    PerChannelSymmetric,
}
