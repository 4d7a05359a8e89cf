namespace Fusion.Dsl.Onnx;

/// <summary>How <see cref="OnnxModel.Write(Algebra.Module, int[], string, OnnxExportOptions?)"/> writes a model.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>The options used when none are given: opset <see cref="DefaultOpset"/>, a fixed batch size.</summary>
    public static OnnxExportOptions Default { get; } = new();

    /// <summary>The opset written by default: 17, the newest that ONNX 1.12's checker (Debian's python3-onnx) knows.</summary>
    public const int DefaultOpset = 17;

    /// <summary>The oldest opset the exporter writes (HardSwish exists from 14 on).</summary>
    public const int MinOpset = 14;

    /// <summary>The newest opset the exporter writes.</summary>
    public const int MaxOpset = 21;

    /// <summary>The ONNX opset (default domain) the graph is written for, between <see cref="MinOpset"/> and <see cref="MaxOpset"/>.</summary>
    public int Opset { get; init; } = DefaultOpset;

    /// <summary>When true, the input's first dimension is the symbolic <c>batch</c>, so a consumer can run any batch size
    /// (a traced reshape whose leading size is its input's first dimension, as in <c>x.reshape(x.size(0), -1)</c>, copies
    /// that dimension instead of writing the export's batch); otherwise it is fixed to the first entry of the input shape.</summary>
    public bool DynamicBatch { get; init; }

    /// <summary>When true, the initializers go to a file beside the model, <c>NAME.onnx.data</c>, as ONNX external data
    /// (what <c>onnx.save(..., save_as_external_data=True)</c> writes); a model past protobuf's 2 GiB limit for one file
    /// is always written so.</summary>
    public bool ExternalData { get; init; }
}
