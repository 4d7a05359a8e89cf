using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// An int8 model on disk: the float model in the model format (<c>X.json</c> + <c>X.safetensors</c>, or
/// <c>DIR/model.json</c> + <c>DIR/model.safetensors</c>, written by <see cref="ModelFile.Write"/>) and beside it
/// <c>X.quantization.json</c> (<c>fusion-quantized/1</c>): the qconfig's name and every quantized layer's path, type,
/// output scale and zero point, and its weight's scales, zero points and axis. The int8 weights are not stored: they are
/// the float weights quantized with those parameters, which <see cref="Read"/> recomputes exactly as convert did.
/// </summary>
public static class QuantizedModelFile
{
    /// <summary>The <c>format</c> field of the quantization file.</summary>
    public const string Format = "fusion-quantized/1";

    /// <summary>The quantization file that goes with a model file (<c>X.json</c> → <c>X.quantization.json</c>; a directory → its <c>model.quantization.json</c>).</summary>
    public static string QuantizationPathFor(string path) => Path.ChangeExtension(ModelFile.JsonPathFor(path), ".quantization.json");

    /// <summary>Writes the float model and its quantization file.</summary>
    /// <param name="path">The <c>.json</c> file or a directory.</param>
    /// <param name="model">The converted model.</param>
    /// <param name="qconfigName">The qconfig it was prepared with, recorded for the reader.</param>
    /// <param name="inputShape">An example input shape to record, or null.</param>
    /// <returns>The quantization file written.</returns>
    /// <exception cref="ModelFormatException">A file cannot be written.</exception>
    public static string Write(string path, QuantizedModel model, string qconfigName, IReadOnlyList<int>? inputShape = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var jsonPath = ModelFile.Write(path, model.FloatModel, inputShape, $"the float model of an int8 model; its quantization is in {Path.GetFileName(QuantizationPathFor(path))}");
        var qPath = QuantizationPathFor(jsonPath);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("format", Format);
            w.WriteString("model", Path.GetFileName(jsonPath));
            w.WriteString("qconfig", qconfigName);
            w.WriteStartArray("layers");
            foreach (var layer in model.Layers.Values.OrderBy(l => l.Path, StringComparer.Ordinal))
            {
                w.WriteStartObject();
                w.WriteString("path", layer.Path);
                w.WriteString("type", layer.TypeName);
                if (layer.Scale is { } s) w.WriteNumber("scale", s);
                if (layer.ZeroPoint is { } z) w.WriteNumber("zero_point", z);
                if (layer.DType is { } d) w.WriteString("dtype", d == QuantizedDType.QUInt8 ? "quint8" : "qint8");
                if (layer.Weight is { } weight)
                {
                    w.WriteStartObject("weight");
                    w.WriteStartArray("scales");
                    foreach (var v in weight.Scales) w.WriteNumberValue(v);
                    w.WriteEndArray();
                    w.WriteStartArray("zero_points");
                    foreach (var v in weight.ZeroPoints) w.WriteNumberValue(v);
                    w.WriteEndArray();
                    if (weight.Axis is { } axis) w.WriteNumber("axis", axis);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        var bytes = buffer.ToArray();
        OutputFile.Write(qPath, s => s.Write(bytes));
        return qPath;
    }

    /// <summary>Reads an int8 model written by <see cref="Write"/>: the float model, and its quantized layers rebuilt from
    /// the recorded parameters.</summary>
    /// <param name="path">The model's <c>.json</c> file or its directory.</param>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or a layer does not fit the model (the message names the path).</exception>
    public static (QuantizedModel Model, string QConfig) Read(string path)
    {
        var jsonPath = ModelFile.JsonPathFor(path);
        var qPath = QuantizationPathFor(jsonPath);
        if (!File.Exists(qPath)) throw new ModelFormatException(qPath, null, "is missing: an int8 model is its float model file and this quantization file beside it");
        var floatModel = ModelFile.Read(jsonPath);
        using var doc = JsonDocument.Parse(File.ReadAllText(qPath, Encoding.UTF8));
        var root = doc.RootElement;
        if (!root.TryGetProperty("format", out var f) || f.GetString() != Format)
            throw new ModelFormatException(qPath, null, $"is not a {Format} file");
        var layers = ImmutableDictionary.CreateBuilder<string, QuantizedLayer>(StringComparer.Ordinal);
        foreach (var l in root.GetProperty("layers").EnumerateArray())
        {
            var layerPath = l.GetProperty("path").GetString() ?? "";
            try
            {
                var type = l.GetProperty("type").GetString();
                if (!ModulePath.TryGet(floatModel, layerPath, out var m))
                    throw new ArgumentException($"the model has no module '{layerPath}'");
                double Scale() => l.GetProperty("scale").GetDouble();
                long Zp() => l.GetProperty("zero_point").GetInt64();
                layers[layerPath] = type switch
                {
                    "Quantize" => QuantizedLayer.Quantize(layerPath, Scale(), Zp(), l.GetProperty("dtype").GetString() == "qint8" ? QuantizedDType.QInt8 : QuantizedDType.QUInt8),
                    "DeQuantize" => QuantizedLayer.DeQuantize(layerPath),
                    "QFunctional" => QuantizedLayer.Functional(layerPath, new QFunctional(Scale(), Zp())),
                    "QuantizedReLU6" => QuantizedLayer.ReLU6(layerPath),
                    "QuantizedLayerNorm" => EagerQuantization.LayerNormLayer(layerPath, m, Scale(), Zp()),
                    "QuantizedGroupNorm" or "QuantizedInstanceNorm1d" or "QuantizedInstanceNorm2d" or "QuantizedInstanceNorm3d"
                        => EagerQuantization.GroupNormLayer(layerPath, m, Scale(), Zp()),
                    "QuantizedLeakyReLU" or "QuantizedELU" => EagerQuantization.ActivationLayer(layerPath, m, Scale(), Zp()),
                    "QuantizedPReLU" => EagerQuantization.PReLULayer(layerPath, m, WeightQParams(l), Scale(), Zp()),
                    "QuantizedHardswish" => QuantizedLayer.Hardswish(layerPath, new QuantizedHardswish(Scale(), Zp())),
                    var t when QuantizedBatchNorm.TypeNames.Contains(t!) => EagerQuantization.BatchNormLayer(layerPath, m, Scale(), Zp()),
                    var t when QuantizedConv.TypeNames.Contains(t!) => EagerQuantization.ConvLayer(layerPath, m, Weight(l, FloatWeight(m)), Scale(), Zp()),
                    var t when QuantizedConvTranspose.TypeNames.Contains(t!) => EagerQuantization.ConvTransposeLayer(layerPath, m, Weight(l, FloatWeight(m)), Scale(), Zp()),
                    "QuantizedLinear" or "QuantizedLinearReLU" => EagerQuantization.LinearLayer(layerPath, m, Weight(l, FloatWeight(m)), Scale(), Zp()),
                    _ => throw new ArgumentException($"unknown quantized layer type '{type}'"),
                };
            }
            catch (Exception e) when (e is ArgumentException or InvalidCastException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new ModelFormatException(qPath, null, $"layer '{layerPath}': {e.Message}", e);
            }
        }
        return (new QuantizedModel(floatModel, layers.ToImmutable()), root.TryGetProperty("qconfig", out var q) ? q.GetString() ?? "" : "");
    }

    private static Tensor FloatWeight(Module m) => m switch
    {
        FusedModule f => FloatWeight(f.Children[0].Module),
        Conv c => c.Weight,
        Linear l => l.Weight,
        _ => throw new ArgumentException($"module {m.TypeName} has no weight to quantize"),
    };

    /// <summary>A per-tensor weight's recorded scale and zero point.</summary>
    private static (double, long) WeightQParams(JsonElement layer)
    {
        var w = layer.GetProperty("weight");
        return (w.GetProperty("scales")[0].GetDouble(), w.GetProperty("zero_points")[0].GetInt64());
    }

    private static QuantizedTensor Weight(JsonElement layer, Tensor floatWeight)
    {
        var w = layer.GetProperty("weight");
        var scales = w.GetProperty("scales").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var zps = w.GetProperty("zero_points").EnumerateArray().Select(v => v.GetInt64()).ToArray();
        return w.TryGetProperty("axis", out var axis)
            ? QuantizedTensor.Quantize(floatWeight, scales, zps, axis.GetInt32(), QuantizedDType.QInt8)
            : QuantizedTensor.Quantize(floatWeight, scales[0], zps[0], QuantizedDType.QInt8);
    }
}
