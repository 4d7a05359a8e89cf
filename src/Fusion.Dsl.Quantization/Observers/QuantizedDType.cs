namespace Fusion.Dsl.Quantization;

/// <summary>The quantized element type an observer computes parameters for (PyTorch's <c>torch.quint8</c> and
/// <c>torch.qint8</c>).</summary>
public enum QuantizedDType
{
    /// <summary>Unsigned 8-bit (<c>torch.quint8</c>): default range 0..255, 0..127 with reduce_range.</summary>
    QUInt8,
    /// <summary>Signed 8-bit (<c>torch.qint8</c>): default range -128..127, -64..63 with reduce_range.</summary>
    QInt8,
}
