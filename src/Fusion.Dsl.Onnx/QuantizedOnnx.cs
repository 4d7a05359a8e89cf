using Fusion.Dsl.Onnx.Export;
using Fusion.Dsl.Quantization;

namespace Fusion.Dsl.Onnx;

/// <summary>
/// A converted int8 model (<see cref="QuantizedModel"/>, PyTorch's eager <c>convert</c> as a value) as ONNX in QDQ form:
/// QuantizeLinear/DequantizeLinear pairs around float operators, the form ONNX Runtime's quantization tool writes and
/// fuses at load time into QLinearConv, QGemm, QLinearAdd, QLinearConcat, ... Activations are 8-bit per-tensor
/// (uint8 for quint8) with their scale and zero point as scalar initializers <c>PATH.scale</c>/<c>PATH.zero_point</c>;
/// Conv1d/2d/3d and Linear weights are int8 initializers <c>PATH.weight</c> with per-channel (axis 0) or per-tensor
/// scales and zero point 0, their biases int32 in steps of input scale × weight scale; a fused ReLU (ConvReLU, LinearReLU,
/// BNReLU) is a Relu before the output's QuantizeLinear; a FloatFunctional's add, add_relu, mul and cat are Add[, Relu],
/// Mul and Concat on dequantized inputs, quantized to its qparams; a quantized Hardswish, LeakyReLU, ELU, BatchNorm,
/// LayerNorm (opset 17 or later), GroupNorm or InstanceNorm is its float operator quantized to its own qparams; a quantized
/// ConvTranspose1d/2d/3d is ConvTranspose on its per-tensor int8 weight, a quantized PReLU is PRelu with its quantized slopes,
/// each quantized to its own qparams; ReLU,
/// ReLU6, max, average and adaptive average pooling, mean, flatten, reshapes, transpose and each piece of a chunk run on
/// dequantized values and are quantized again with the same qparams, Hardsigmoid and sigmoid to PyTorch's fixed 1/256;
/// parts kept float are exported as <see cref="OnnxModel.Write(Algebra.Module, int[], string, OnnxExportOptions?)"/>
/// writes them.
/// </summary>
public static class QuantizedOnnx
{
    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> in QDQ form for float32 inputs of
    /// <paramref name="inputShape"/> (the first entry is the batch size, symbolic with
    /// <see cref="OnnxExportOptions.DynamicBatch"/>). The file is replaced atomically: on any error nothing is written.
    /// </summary>
    /// <exception cref="OnnxExportException">A layer has no QDQ form here, or a module meets a value it cannot take (a
    /// quantized tensor where PyTorch's quantized forward has no quantized form); the message names its path and type.</exception>
    /// <exception cref="ArgumentException">The input shape is empty or has a non-positive entry, or the opset is out of range.</exception>
    /// <exception cref="IO.ModelFormatException">The file cannot be written there (see <see cref="IO.OutputFile"/>).</exception>
    public static void Write(QuantizedModel model, int[] inputShape, string path, OnnxExportOptions? options = null)
        => Write(model, inputShape, path, options, QdqBias.Int32);

    /// <summary><see cref="Write(QuantizedModel, int[], string, OnnxExportOptions?)"/> with the bias written as
    /// <paramref name="bias"/> says (the float form is kept for measuring ONNX Runtime against the int32 one).</summary>
    internal static void Write(QuantizedModel model, int[] inputShape, string path, OnnxExportOptions? options, QdqBias bias)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentNullException.ThrowIfNull(path);
        var o = options ?? OnnxExportOptions.Default;
        var proto = OnnxModel.Build(model.FloatModel, inputShape, o, out var initializers, e => new QdqExporter(e, model, bias),
            $"{model.FloatModel.TypeName} quantized to int8 (PyTorch's eager convert) exported by Fusion.Dsl in QDQ form");
        OnnxFileWriter.Write(path, proto, initializers, o.ExternalData);
    }
}
