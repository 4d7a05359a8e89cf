namespace Fusion.Dsl.Onnx.Export;

/// <summary>A tensor of the graph being written: its ONNX value name and its shape for the export's input shape.</summary>
internal sealed record OnnxValue(string Name, int[] Shape)
{
    /// <summary>Number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>The shape as PyTorch prints it.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
