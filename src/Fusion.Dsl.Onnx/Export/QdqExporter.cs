using System.Runtime.InteropServices;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Quantization;
using Fusion.Dsl.Tensors;
using Google.Protobuf;
using static Fusion.Dsl.Onnx.Export.OnnxGraphWriter;
using LayerWriter = System.Func<Fusion.Dsl.Onnx.Export.QdqExporter, Fusion.Dsl.Quantization.QuantizedLayer, Fusion.Dsl.Algebra.Module, Fusion.Dsl.Onnx.Export.OnnxValue, string, Fusion.Dsl.Onnx.Export.OnnxValue>;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Writes a converted int8 model (<see cref="QuantizedModel"/>) in ONNX's QDQ form, the form ONNX Runtime's own
/// quantization tool writes and fuses into QLinearConv, QGemm, QLinearAdd, ... when it loads the file: every quantized
/// value is the output of a <c>DequantizeLinear</c> fed by a <c>QuantizeLinear</c> with the value's scale and zero point
/// (an 8-bit per-tensor activation; a bilinear upsampling's <c>QuantizeLinear</c> takes scale 1 instead, see
/// <see cref="BilinearInSteps"/>), and each quantized operation is its float operator on dequantized inputs followed
/// by a <c>QuantizeLinear</c> to its output qparams. It walks the model as
/// <see cref="QuantizedModel.Forward(Fusion.Dsl.Tensors.Tensor)"/> does, in front of the float exporter
/// (<see cref="IExportHook"/>): a converted layer is written by its entry in <see cref="Layers"/>; a float module or
/// graph operation on a quantized value that PyTorch runs on quantized tensors keeping their qparams (ReLU, ReLU6, max
/// and average pooling, mean, flatten, reshape, transpose, chunk, and upsampling: interpolate and the Upsample modules
/// as Resize) is its float form re-quantized with the input's qparams, and Hardsigmoid and Sigmoid their float form
/// quantized to PyTorch's fixed qparams; the add/add_relu/mul/cat of a converted <c>FloatFunctional</c> is the float
/// operation quantized where the graph calls its <c>activation_post_process</c>; parts kept float are the float export.
/// Anything else that meets a quantized value is refused with its path and type, as the quantized forward refuses it.
/// </summary>
internal sealed class QdqExporter(OnnxExporter exporter, QuantizedModel model, QdqBias bias) : IExportHook
{
    private const string ActivationPostProcess = ".activation_post_process";

    /// <summary>
    /// How each converted layer type is written, by <see cref="QuantizedLayer.TypeName"/>: adding a quantized layer type
    /// is one entry here (or one in <see cref="Refused"/>, with the reason). A weight-free layer whose PyTorch forward is
    /// its float module's followed by quantization to the layer's output qparams (quantized Hardswish, BatchNorm, BNReLU,
    /// LeakyReLU, ELU, LayerNorm, GroupNorm, InstanceNorm) takes <see cref="FloatThenQuantize"/>.
    /// </summary>
    internal static readonly IReadOnlyDictionary<string, LayerWriter> Layers =
        new Dictionary<string, LayerWriter>(StringComparer.Ordinal)
        {
            ["Quantize"] = (e, l, m, x, p) => e.QuantizeInput(l, m, x, p),
            ["DeQuantize"] = (e, l, m, x, p) => e.DequantizeOutput(m, x, p),
            ["QuantizedLinear"] = (e, l, m, x, p) => e.Linear(l, m, x, p, relu: false),
            ["QuantizedLinearReLU"] = (e, l, m, x, p) => e.Linear(l, m, x, p, relu: true),
            ["QuantizedReLU6"] = (e, l, m, x, p) => e.KeepInputQParams(l, m, x, p),
            ["QuantizedPReLU"] = (e, l, m, x, p) => e.PReLU(l, m, x, p),
        }
        .Concat(new[] { 1, 2, 3 }.SelectMany(r => new[]
        {
            KeyValuePair.Create<string, LayerWriter>($"QuantizedConv{r}d", (e, l, m, x, p) => e.Conv(l, m, x, p, r, relu: false)),
            KeyValuePair.Create<string, LayerWriter>($"QuantizedConvReLU{r}d", (e, l, m, x, p) => e.Conv(l, m, x, p, r, relu: true)),
            KeyValuePair.Create<string, LayerWriter>($"QuantizedConvTranspose{r}d", (e, l, m, x, p) => e.ConvTranspose(l, m, x, p, r)),
        }))
        .Concat(new[]
        {
            "QuantizedHardswish", "QuantizedBatchNorm2d", "QuantizedBatchNorm3d", "QuantizedBNReLU2d", "QuantizedBNReLU3d", "QuantizedLeakyReLU", "QuantizedELU",
            "QuantizedLayerNorm", "QuantizedGroupNorm", "QuantizedInstanceNorm1d", "QuantizedInstanceNorm2d", "QuantizedInstanceNorm3d",
        }.Select(t => KeyValuePair.Create<string, LayerWriter>(t, (e, l, m, x, p) => e.FloatThenQuantize(l, m, x, p))))
        .ToDictionary(StringComparer.Ordinal);

    /// <summary>The converted layer types this exporter refuses, by <see cref="QuantizedLayer.TypeName"/>, with the reason
    /// the refusal gives: a <c>QFunctional</c> is written through its add/add_relu/mul/cat calls, never as a module call.</summary>
    internal static readonly IReadOnlyDictionary<string, string> Refused = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["QFunctional"] = "a converted FloatFunctional is called as a module; its add/add_relu/mul/cat calls are the quantized operations",
    };

    /// <summary>The float modules PyTorch runs on a quantized tensor, with the output keeping the input's qparams
    /// (as <see cref="QuantizedModel"/>'s forward runs them); true when the module is the identity there.</summary>
    private static bool? KeepsQParams(Module m) => m switch
    {
        Identity => true,
        Dropout { Training: false } => true,
        Activation { Kind: ActivationKind.ReLU or ActivationKind.ReLU6 } or Flatten or MaxPool2d or AvgPool2d or AdaptiveAvgPool2d => false,
        // PyTorch's quantized upsample_nearest2d/upsample_bilinear2d keep the input's qparams: DequantizeLinear, Resize,
        // QuantizeLinear with the same ones (ONNX Runtime then runs a nearest Resize on the 8-bit values directly; a
        // bilinear one is written in steps of the scale, see BilinearInSteps).
        _ when Upsampling(m) => false,
        _ => null,
    };

    /// <summary>Whether <paramref name="m"/> is nn.Upsample, nn.UpsamplingNearest2d or nn.UpsamplingBilinear2d.</summary>
    private static bool Upsampling(Module m)
        => m is OpaqueModule { Namespace: "torch.nn", TypeName: "Upsample" or "UpsamplingNearest2d" or "UpsamplingBilinear2d" };

    /// <summary>The graph operations PyTorch runs on quantized tensors keeping their qparams (chunk's every piece keeps them).</summary>
    private static readonly HashSet<string> QParamsKeepingOps = new(StringComparer.Ordinal)
    {
        "relu", "relu6", "flatten", "reshape", "view", "contiguous", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "mean", "transpose", "chunk", "interpolate",
    };

    /// <summary>The graph operations written on a quantized tensor: those keeping its qparams, hardsigmoid and sigmoid
    /// (PyTorch's fixed qparams), and size and getitem, which read its shape or pick a piece of its chunk.</summary>
    internal static readonly IReadOnlySet<string> QuantizedOperations =
        QParamsKeepingOps.Concat(["hardsigmoid", "sigmoid", "size", "getitem"]).ToHashSet(StringComparer.Ordinal);

    /// <summary>The operations of a converted FloatFunctional, quantized where its activation_post_process is called.</summary>
    private static readonly HashSet<string> FunctionalOps = new(StringComparer.Ordinal) { "add", "mul", "cat" };

    /// <summary>A quantized value's qparams and the names of their initializers.</summary>
    private sealed record QdqParams(double Scale, long ZeroPoint, QuantizedDType DType, string ScaleName, string ZeroPointName);

    /// <summary>A float result of a FloatFunctional operation on quantized values, waiting for its observer call.</summary>
    private sealed record Pending(string Op, QuantizedDType DType, string Path);

    private readonly Dictionary<OnnxValue, QdqParams> _quantized = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<OnnxValue, Pending> _pending = new(ReferenceEqualityComparer.Instance);

    /// <summary>The 8-bit tensor (its QuantizeLinear's output) each quantized value dequantizes.</summary>
    private readonly Dictionary<OnnxValue, string> _integers = new(ReferenceEqualityComparer.Instance);
    private readonly List<TensorProto> _initializers = [];
    private OnnxGraphWriter W => exporter.Writer;

    /// <inheritdoc/>
    public IReadOnlyList<TensorProto> Initializers => _initializers;

    // ---- the hook -------------------------------------------------------------------------------------------

    /// <inheritdoc/>
    public OnnxValue? Module(Module m, OnnxValue x, string path)
    {
        if (model.Layers.TryGetValue(path, out var layer))
        {
            if (_pending.ContainsKey(x)) throw Unobserved(x);
            if (!Layers.TryGetValue(layer.TypeName, out var write))
                throw OnnxExporter.Refuse(m, path, Refused.GetValueOrDefault(layer.TypeName)
                    ?? $"the quantized layer {layer.TypeName} has no QDQ form in this exporter; keep it float with a None qconfig (a DeQuantStub before it, a QuantStub after it) to export the rest");
            return write(this, layer, m, x, path);
        }
        if (path.EndsWith(ActivationPostProcess, StringComparison.Ordinal)
            && model.Layers.TryGetValue(path[..^ActivationPostProcess.Length], out var ff) && ff.TypeName == "QFunctional")
            return Observed(ff, m, x, path);
        if (_pending.ContainsKey(x)) throw Unobserved(x);
        if (!_quantized.TryGetValue(x, out var q)) return null;
        switch (m)
        {
            case UserModule or Sequential or FusedModule:
                return null;
            case OpaqueModule o when Upsampling(o) && o.Argument("mode", "nearest") is "bilinear":
                return BilinearInSteps(x, q, path, steps => exporter.FloatModule(m, steps, path));
            case Activation { Kind: ActivationKind.Hardsigmoid } or OpaqueModule { Namespace: "torch.nn", TypeName: "Sigmoid" }:
                return QuantizeDequantize(exporter.FloatModule(m, x, path), UnitIntervalQParams(path, q.DType), path);
        }
        return KeepsQParams(m) switch
        {
            true => x,
            false => QuantizeDequantize(exporter.FloatModule(m, x, path), q, path),
            null => throw OnnxExporter.Refuse(m, path, "receives a quantized tensor, and this exporter has no QDQ form for it on one; keep it float with a None qconfig and a DeQuantStub before it"),
        };
    }

    /// <inheritdoc/>
    public object? Operation(OpCall call, string path, Func<object?> floatForm)
    {
        var tensors = call.Op.Parameters.SelectMany(p => call.Value(p.Name) switch
        {
            OnnxValue v => [v],
            object?[] list => list.OfType<OnnxValue>(),
            _ => [],
        }).ToList();
        var name = call.Op.Name;
        var pending = tensors.Where(_pending.ContainsKey).ToList();
        if (pending.Count > 0)
        {
            // add followed by relu is add_relu: the relu is part of the FloatFunctional's operation.
            if (name != "relu" || pending.Count != 1 || _pending[pending[0]].Op != "add") throw Unobserved(pending[0]);
            var p = _pending[pending[0]];
            _pending.Remove(pending[0]);
            var y = (OnnxValue)floatForm()!;
            _pending[y] = p with { Op = "add_relu" };
            return y;
        }
        var quantized = tensors.Where(_quantized.ContainsKey).ToList();
        if (quantized.Count == 0) return floatForm();
        if (FunctionalOps.Contains(name))
        {
            if (quantized.Count != tensors.Count || name != "cat" && !(call.Value("other") is OnnxValue))
                throw new OnnxExportException(path, name, $"{name} of a quantized tensor and {(name == "cat" ? "a float one" : "a scalar or float tensor")} has no quantized form (a converted FloatFunctional's {name} takes quantized tensors)");
            var dtypes = quantized.Select(v => _quantized[v].DType).Distinct().ToList();
            if (dtypes.Count != 1) throw new OnnxExportException(path, name, $"{name} of quint8 and qint8 tensors");
            var y = (OnnxValue)floatForm()!;
            _pending[y] = new Pending(name, dtypes[0], path);
            return y;
        }
        // size reads a shape; getitem on a list picks one piece of a chunk, each already quantized below (indexing a
        // quantized tensor itself has no quantized form, as in the quantized forward).
        if (name == "size" || name == "getitem" && call.Value(call.Op.Parameters[0].Name) is object?[]) return floatForm();
        if (name is "hardsigmoid" or "sigmoid" && quantized.Count == 1)
            return QuantizeDequantize((OnnxValue)floatForm()!, UnitIntervalQParams(path, _quantized[quantized[0]].DType), path);
        if (!QParamsKeepingOps.Contains(name) || quantized.Count != 1)
            throw new OnnxExportException(path, name, $"{call.Op} on a quantized tensor has no QDQ form in this exporter (it writes {string.Join(", ", QuantizedOperations.Order(StringComparer.Ordinal))} on quantized tensors)");
        var q = _quantized[quantized[0]];
        if (name == "interpolate" && call.Value("mode") is "bilinear")
            return BilinearInSteps(quantized[0], q, path, steps => exporter.Operators.Interpolate(call, steps, path));
        // Each piece of a chunk (ONNX's Split) gets its own QuantizeLinear/DequantizeLinear with the input's qparams, so
        // that ONNX Runtime sees DQ -> Split -> Q and later operators read a quantized value.
        return floatForm() switch
        {
            OnnxValue v when !ReferenceEquals(v, quantized[0]) => QuantizeDequantize(v, q, path),
            object?[] pieces => pieces.Select((p, i) => p is OnnxValue v ? QuantizeDequantize(v, q, $"{path}/{i}") : p).ToArray(),
            var same => same,
        };
    }

    /// <inheritdoc/>
    public bool Quantized(OnnxValue x) => _quantized.ContainsKey(x);

    /// <inheritdoc/>
    public void Finish(OnnxValue result)
    {
        if (_pending.Count > 0) throw Unobserved(_pending.Keys.First());
    }

    // ---- converted layers -----------------------------------------------------------------------------------

    /// <summary>QuantStub: the float input quantized, then dequantized for the operators that read it.</summary>
    private OnnxValue QuantizeInput(QuantizedLayer l, Module m, OnnxValue x, string path)
    {
        if (_quantized.ContainsKey(x)) throw OnnxExporter.Refuse(m, path, "(Quantize) takes a float tensor, got a quantized one");
        return QuantizeDequantize(x, ActivationQParams(path, l.Scale!.Value, l.ZeroPoint!.Value, l.DType!.Value), path);
    }

    /// <summary>DeQuantStub: the quantized value's DequantizeLinear output, now read as a float value.</summary>
    private OnnxValue DequantizeOutput(Module m, OnnxValue x, string path)
    {
        if (!_quantized.ContainsKey(x)) throw OnnxExporter.Refuse(m, path, "(DeQuantize) takes a quantized tensor, got a float one");
        return x with { };
    }

    /// <summary>A converted layer without weights whose PyTorch forward is its float module's, quantized to the layer's
    /// output qparams (Hardswish, LeakyReLU, ELU, BatchNorm, LayerNorm, GroupNorm, InstanceNorm); a fused BNReLU is its
    /// BatchNorm's float form and a Relu, as <see cref="EagerQuantization"/> reads the fused pair.</summary>
    internal OnnxValue FloatThenQuantize(QuantizedLayer l, Module m, OnnxValue x, string path)
    {
        var q = Input(l, m, x, path);
        // The fused group's children are not walked (the hook would see a quantized value reach a bare BatchNorm): its
        // head is written in float form here and its ReLU by Output.
        var (head, headPath, relu) = m is FusedModule { Children: [var first, ..] } ? (first.Module, ModulePath.Join(path, first.Name), true) : (m, path, false);
        return Output(l, exporter.FloatModule(head, x, headPath), q, path, relu);
    }

    /// <summary>A converted layer that keeps its input's qparams (nnq.ReLU6): its float module quantized again with them,
    /// which is exact, as PyTorch clamps the integers and the float Clip of dequantized integers lands on them.</summary>
    private OnnxValue KeepInputQParams(QuantizedLayer l, Module m, OnnxValue x, string path)
        => QuantizeDequantize(exporter.FloatModule(m, x, path), Input(l, m, x, path), path);

    /// <summary>A quantized Conv1d/2d/3d (ConvReLU with <paramref name="relu"/>) of spatial rank <paramref name="rank"/>:
    /// a float Conv on the dequantized input and the dequantized int8 weight, then Relu, then QuantizeLinear to the
    /// layer's qparams.</summary>
    private OnnxValue Conv(QuantizedLayer l, Module m, OnnxValue x, string path, int rank, bool relu)
    {
        var q = Input(l, m, x, path);
        var conv = m as Conv ?? (m is FusedModule f ? FusedChain.Of(f)?.Head.Module as Conv : null)
                   ?? throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) is not a Conv{rank}d or a fused group headed by one in the float model");
        if (conv.Rank != rank || conv.Transposed || conv.PaddingMode != PaddingMode.Zeros)
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) a quantized Conv{rank}d pads with zeros; this float module is {conv.TypeName} with padding mode {conv.PaddingMode}");
        if (x.Rank != rank + 2 || x.Shape[1] != conv.InChannels)
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) expects an input [N, {conv.InChannels}, {string.Join(", ", "DHW"[(3 - rank)..].Select(c => c.ToString()))}], got {x.ShapeText}");
        var (left, right) = conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan());
        var spatial = Enumerable.Range(0, rank).Select(i =>
            (x.Shape[2 + i] + left[i] + right[i] - conv.Dilation[i] * (conv.KernelSize[i] - 1) - 1) / conv.Stride[i] + 1).ToArray();
        if (spatial.Any(d => d <= 0)) throw OnnxExporter.Refuse(m, path, $"the input {x.ShapeText} is smaller than the kernel's reach");
        var inputs = WeightAndBias(l, q, path);
        var y = W.Node("Conv", path, [x.Name, .. inputs], [x.Shape[0], conv.OutChannels, .. spatial],
            Ints("kernel_shape", conv.KernelSize), Ints("strides", conv.Stride), Ints("dilations", conv.Dilation),
            Int("group", conv.Groups), Ints("pads", [.. left, .. right]));
        return Output(l, y, q, path, relu);
    }

    /// <summary>A quantized ConvTranspose1d/2d/3d: ConvTranspose on the dequantized input and per-tensor weight (PyTorch
    /// refuses per-channel weights and output padding for it, so neither reaches here), then QuantizeLinear.</summary>
    private OnnxValue ConvTranspose(QuantizedLayer l, Module m, OnnxValue x, string path, int rank)
    {
        var q = Input(l, m, x, path);
        if (m is not Conv { Transposed: true } conv || conv.Rank != rank || conv.PaddingMode != PaddingMode.Zeros || conv.OutputPadding.Any(p => p != 0))
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) is not a ConvTranspose{rank}d with zero padding mode and no output padding in the float model");
        if (x.Rank != rank + 2 || x.Shape[1] != conv.InChannels)
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) expects an input [N, {conv.InChannels}, ...] of rank {rank + 2}, got {x.ShapeText}");
        var (left, right) = conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan());
        var spatial = Enumerable.Range(0, rank).Select(i => (int)SlidingWindow.ConvTransposeOutput(x.Shape[2 + i], conv.KernelSize[i], conv.Stride[i],
            left[i], right[i], conv.Dilation[i], 0)).ToArray();
        if (spatial.Any(d => d <= 0)) throw OnnxExporter.Refuse(m, path, $"the padding leaves no output for the input {x.ShapeText}");
        var y = W.Node("ConvTranspose", path, [x.Name, .. WeightAndBias(l, q, path)], [x.Shape[0], conv.OutChannels, .. spatial],
            Ints("kernel_shape", conv.KernelSize), Ints("strides", conv.Stride), Ints("dilations", conv.Dilation),
            Int("group", conv.Groups), Ints("pads", [.. left, .. right]));
        return Output(l, y, q, path, relu: false);
    }

    /// <summary>A quantized PReLU: PRelu on the dequantized input with the slopes as the quantized module holds them
    /// (PyTorch's convert quantizes them, so a slope can round to 0), shaped [C, 1, ...] to broadcast along the channels,
    /// then QuantizeLinear.</summary>
    private OnnxValue PReLU(QuantizedLayer l, Module m, OnnxValue x, string path)
    {
        var q = Input(l, m, x, path);
        var slopes = l.Weight!.Dequantize();
        var channels = slopes.Count;
        if (channels != 1 && (x.Rank < 2 || x.Shape[1] != channels))
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) has {channels} slopes, one per channel, but the input is {x.ShapeText}");
        int[] shape = channels == 1 ? [1] : [channels, .. Enumerable.Repeat(1, x.Rank - 2)];
        var slope = W.Initializer(ModulePath.Join(path, "weight"), slopes.Reshape(shape));
        return Output(l, W.Node("PRelu", path, [x.Name, slope], x.Shape), q, path, relu: false);
    }

    /// <summary>A quantized Linear (LinearReLU with <paramref name="relu"/>): Gemm on a matrix input, else MatMul with the
    /// transposed dequantized weight plus the bias, then Relu, then QuantizeLinear.</summary>
    private OnnxValue Linear(QuantizedLayer l, Module m, OnnxValue x, string path, bool relu)
    {
        var q = Input(l, m, x, path);
        var weight = l.Weight!;
        int outFeatures = weight.Size(0), inFeatures = weight.Size(1);
        if (x.Rank == 0 || x.Shape[^1] != inFeatures)
            throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) expects an input [..., {inFeatures}], got {x.ShapeText}");
        int[] shape = [.. x.Shape[..^1], outFeatures];
        var inputs = WeightAndBias(l, q, path);
        OnnxValue y;
        if (x.Rank == 2) y = W.Node("Gemm", path, [x.Name, .. inputs], shape, Int("transB", 1));
        else
        {
            var wt = W.Node("Transpose", path + "/Transpose", [inputs[0]], [inFeatures, outFeatures], Ints("perm", [1, 0]));
            y = W.Node("MatMul", path, [x.Name, wt.Name], shape);
            if (inputs.Length == 2) y = W.Node("Add", path + "/Add", [y.Name, inputs[1]], shape);
        }
        return Output(l, y, q, path, relu);
    }

    /// <summary>A quantized FloatFunctional's result: the pending float operation quantized to its qparams.</summary>
    private OnnxValue Observed(QuantizedLayer ff, Module m, OnnxValue x, string path)
    {
        if (!_pending.Remove(x, out var p))
            throw OnnxExporter.Refuse(m, path, "is called on something other than the result of its FloatFunctional's add, add_relu, mul or cat on quantized tensors");
        return QuantizeDequantize(x, ActivationQParams(path[..^ActivationPostProcess.Length], ff.Scale!.Value, ff.ZeroPoint!.Value, p.DType), path);
    }

    // ---- pieces ---------------------------------------------------------------------------------------------

    /// <summary>PyTorch's fixed output qparams of a quantized hardsigmoid and sigmoid (outputs in [0, 1]): scale 1/256,
    /// zero point 0 for quint8 and -128 for qint8 (see <see cref="QuantizedHardsigmoid"/>, <see cref="QuantizedSigmoid"/>).</summary>
    private QdqParams UnitIntervalQParams(string path, QuantizedDType dtype)
        => ActivationQParams(path, QuantizedHardsigmoid.OutputScale, dtype == QuantizedDType.QInt8 ? -128 : 0, dtype);

    private QdqParams Input(QuantizedLayer l, Module m, OnnxValue x, string path)
        => _quantized.TryGetValue(x, out var q) ? q
            : throw OnnxExporter.Refuse(m, path, $"({l.TypeName}) takes a quantized tensor, got a float one; a QuantStub must run before it");

    /// <summary>The optional Relu and the layer's QuantizeLinear/DequantizeLinear after a float operator.</summary>
    private OnnxValue Output(QuantizedLayer l, OnnxValue y, QdqParams input, string path, bool relu)
    {
        if (relu) y = W.Node("Relu", path + "/Relu", [y.Name], y.Shape);
        return QuantizeDequantize(y, ActivationQParams(path, l.Scale!.Value, l.ZeroPoint!.Value, input.DType), path);
    }

    /// <summary>The dequantized int8 weight (per channel along axis 0, or per tensor; zero points 0) and the bias:
    /// float32 as PyTorch keeps it, or int32 in steps of input scale × weight scale (see <see cref="QdqBias"/>).</summary>
    private string[] WeightAndBias(QuantizedLayer l, QdqParams input, string path)
    {
        var w = l.Weight!;
        var perChannel = w.IsPerChannel;
        var scales = w.Scales.Select(s => (float)s).ToArray();
        var wName = Initializer(ModulePath.Join(path, "weight"), TensorProto.Types.DataType.Int8, [.. w.Dimensions], w.IntRepr().Select(v => (byte)(sbyte)v).ToArray());
        var wScale = Floats(ModulePath.Join(path, "weight_scale"), scales, perChannel);
        var wZero = Initializer(ModulePath.Join(path, "weight_zero_point"), TensorProto.Types.DataType.Int8, perChannel ? [scales.Length] : [], new byte[scales.Length]);
        var axis = perChannel ? new[] { Int("axis", 0) } : [];
        var weight = W.Node("DequantizeLinear", path + "/weight/DequantizeLinear", [wName, wScale, wZero], [.. w.Dimensions], axis);
        if (l.Bias is not { } b) return [weight.Name];
        if (bias == QdqBias.Float) return [weight.Name, W.Initializer(ModulePath.Join(path, "bias"), b)];
        // int32 in steps of (float)x_scale · (float)w_scale[c], as ONNX Runtime's quantizer writes it (round half to even).
        int channels = b.Count;
        var step = Enumerable.Range(0, channels).Select(c => (float)input.Scale * scales[perChannel ? c : 0]).ToArray();
        var values = new int[channels];
        var bf = b.Float32;
        for (int c = 0; c < channels; c++)
            values[c] = (int)Math.Clamp(Math.Round((double)bf[c] / step[c], MidpointRounding.ToEven), int.MinValue, int.MaxValue);
        var bName = Initializer(ModulePath.Join(path, "bias"), TensorProto.Types.DataType.Int32, [channels], MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        var bScale = Floats(ModulePath.Join(path, "bias_scale"), step, perChannel: true);
        var bZero = Initializer(ModulePath.Join(path, "bias_zero_point"), TensorProto.Types.DataType.Int32, [channels], new byte[4 * channels]);
        return [weight.Name, W.Node("DequantizeLinear", path + "/bias/DequantizeLinear", [bName, bScale, bZero], [channels], Int("axis", 0)).Name];
    }

    /// <summary>QuantizeLinear then DequantizeLinear with <paramref name="q"/>: the quantized value, as the operators read it.</summary>
    private OnnxValue QuantizeDequantize(OnnxValue y, QdqParams q, string path) => QuantizeDequantize(y, q.ScaleName, q, path);

    /// <summary>QuantizeLinear with scale <paramref name="quantizeScale"/> (the value's own, or 1 for a value in steps of
    /// it) and <paramref name="q"/>'s zero point, then DequantizeLinear with <paramref name="q"/>.</summary>
    private OnnxValue QuantizeDequantize(OnnxValue y, string quantizeScale, QdqParams q, string path)
    {
        var quantized = W.Node("QuantizeLinear", path + "/QuantizeLinear", [y.Name, quantizeScale, q.ZeroPointName], y.Shape);
        var dequantized = W.Node("DequantizeLinear", path + "/DequantizeLinear", [quantized.Name, q.ScaleName, q.ZeroPointName], y.Shape);
        _quantized[dequantized] = q;
        _integers[dequantized] = quantized.Name;
        return dequantized;
    }

    /// <summary>
    /// A bilinear upsampling of quantized value <paramref name="x"/> (its output keeps <paramref name="q"/>): the float
    /// Resize (<paramref name="resize"/>) on x's 8-bit integers dequantized with scale 1, so that it interpolates
    /// x − zero point as PyTorch's integer kernel does, exactly where the weights are multiples of a power of two
    /// (a scale factor of 2), and QuantizeLinear with scale 1 rounds half steps to even as PyTorch's nearbyint does; the
    /// integers are then read on with q. With q's own scale on both sides the float products land a rounding error to
    /// either side of those half steps, and ONNX Runtime's integers differed from PyTorch's on up to 5% of them.
    /// </summary>
    private OnnxValue BilinearInSteps(OnnxValue x, QdqParams q, string path, Func<OnnxValue, OnnxValue> resize)
    {
        var unit = W.Scalar(1f);
        var steps = W.Node("DequantizeLinear", path + "/steps/DequantizeLinear", [_integers[x], unit, q.ZeroPointName], x.Shape);
        return QuantizeDequantize(resize(steps), unit, q, path);
    }

    /// <summary>The per-tensor qparams of an activation, as scalar initializers named <c>PATH.scale</c> and
    /// <c>PATH.zero_point</c> (PyTorch's quantized state_dict names).</summary>
    private QdqParams ActivationQParams(string path, double scale, long zeroPoint, QuantizedDType dtype)
    {
        var scaleName = Floats(ModulePath.Join(path, "scale"), [(float)scale], perChannel: false);
        var zeroName = dtype == QuantizedDType.QUInt8
            ? Initializer(ModulePath.Join(path, "zero_point"), TensorProto.Types.DataType.Uint8, [], [(byte)zeroPoint])
            : Initializer(ModulePath.Join(path, "zero_point"), TensorProto.Types.DataType.Int8, [], [(byte)(sbyte)zeroPoint]);
        return new QdqParams(scale, zeroPoint, dtype, scaleName, zeroName);
    }

    private string Floats(string name, float[] values, bool perChannel)
        => Initializer(name, TensorProto.Types.DataType.Float, perChannel ? [values.Length] : [], MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    /// <summary>A typed initializer under a unique name (<c>#2</c> when a module is called twice).</summary>
    private string Initializer(string name, TensorProto.Types.DataType type, int[] dims, byte[] raw)
    {
        var unique = W.NewName(name);
        var t = new TensorProto { Name = unique, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        foreach (var d in dims) t.Dims.Add(d);
        _initializers.Add(t);
        return unique;
    }

    private OnnxExportException Unobserved(OnnxValue x)
        => new(_pending[x].Path, _pending[x].Op, "the result of a FloatFunctional operation on quantized tensors is used before its activation_post_process quantizes it (only add followed by relu, add_relu, may come between)");
}

/// <summary>How the bias of a quantized convolution (1-d, 2-d or 3-d) or Linear is written in the QDQ graph.</summary>
internal enum QdqBias
{
    /// <summary>As int32 in steps of input scale × weight scale, dequantized (what ONNX Runtime's quantizer writes and
    /// fuses into QLinearConv).</summary>
    Int32,

    /// <summary>As the float32 bias PyTorch's quantized module keeps.</summary>
    Float,
}
