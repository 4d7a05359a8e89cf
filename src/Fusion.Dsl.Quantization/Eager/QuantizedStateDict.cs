using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// A converted model's <c>state_dict</c> as PyTorch 1.13 writes and reads it (<c>torch.save(qmodel.state_dict(), f)</c>,
/// <c>qmodel.load_state_dict(torch.load(f), strict=True)</c>), so that an int8 model moves between PyTorch and this
/// library without recalibrating. <see cref="Save"/> writes every key of the model PyTorch's own <c>prepare</c>/<c>convert</c>
/// builds from the same float model and qconfig; <see cref="Load"/> reads such a file into a converted model of ours.
/// <para>
/// The keys of each quantized layer type (one entry of <see cref="Formats"/>, as its PyTorch module's
/// <c>_save_to_state_dict</c> writes them): <c>Quantize</c> — <c>scale</c> [1] float32 and <c>zero_point</c> [1] int64
/// buffers; quantized <c>Conv1d</c>/<c>2d</c>/<c>3d</c> and <c>ConvReLU1d</c>/<c>2d</c>/<c>3d</c> — <c>weight</c> (qint8, per tensor or per channel), <c>bias</c>
/// (float32 or None), <c>scale</c> and <c>zero_point</c> (0-d float32 and int64); quantized <c>ConvTranspose1d</c>/<c>2d</c>/<c>3d</c>
/// — the same keys, the weight [C_in, C_out / groups, *kernel] per tensor; quantized <c>Linear</c>/<c>LinearReLU</c>
/// — <c>scale</c>, <c>zero_point</c>, <c>_packed_params.dtype</c> (<c>torch.qint8</c>) and
/// <c>_packed_params._packed_params</c>, the tuple (weight, bias), with <c>_metadata</c> version 3 for the module and its
/// packed params (older versions name other keys); quantized <c>BatchNorm2d</c>/<c>3d</c> and <c>BNReLU2d</c>/<c>3d</c> —
/// <c>weight</c>, <c>bias</c>, <c>running_mean</c>, <c>running_var</c> (float32), <c>num_batches_tracked</c> (0-d int64),
/// <c>scale</c> and <c>zero_point</c> ([1] float32 and int64), version 2; quantized <c>LayerNorm</c> — <c>weight</c> and
/// <c>bias</c> where it has elementwise affine, <c>scale</c> and <c>zero_point</c> (0-d); quantized <c>GroupNorm</c> —
/// and <c>InstanceNorm1d</c>/<c>2d</c>/<c>3d</c> — likewise, their <c>weight</c> and <c>bias</c> [C]; <c>QFunctional</c> — <c>scale</c> and <c>zero_point</c> (its
/// <c>activation_post_process</c> is an Identity without state); <c>DeQuantize</c> — nothing. Modules kept float
/// (a None qconfig) contribute their float state under their own keys, as in PyTorch.
/// </para>
/// Reading goes through the restricted unpickler with exactly the globals such a file names (<c>_rebuild_qtensor</c>, the
/// per-tensor and per-channel affine qschemes, <c>torch.qint8</c>/<c>quint8</c>, the quantized storages) and refuses a
/// file that disagrees with the model — a missing or unexpected key, a shape or dtype other than the model's, a scale
/// that is not positive and finite, a zero point out of range, per-channel parameters of the wrong length, packed params
/// that are not (qint8 weight, bias) — with a <see cref="ModelFormatException"/> naming the file and the key.
/// </summary>
public static class QuantizedStateDict
{
    /// <summary>Every quantized layer type (<see cref="QuantizedLayer.TypeName"/>) this format knows, which is every type
    /// <see cref="EagerQuantization.Convert"/> and QAT's convert build: the exporters' completeness tests enumerate it.</summary>
    internal static IEnumerable<string> LayerTypes => Formats.Keys;

    /// <summary>How one quantized layer type is written and read: its entries (keys relative to the layer's path, in
    /// PyTorch's order), how a layer is rebuilt from them over the template layer, and its <c>_metadata</c> versions
    /// (by module path relative to the layer; PyTorch's default 1 is not written).</summary>
    private sealed record Format(
        Func<QuantizedLayer, IEnumerable<(string Key, object? Value)>> Save,
        Func<LayerReader, QuantizedLayer> Load,
        params (string Module, long Version)[] Versions);

    /// <summary>The quantized layer types whose output scale and zero point PyTorch 1.13 keeps as plain attributes,
    /// outside the state_dict (<c>Hardswish</c>, <c>ELU</c>, <c>PReLU</c> with its slopes too): <see cref="Load"/> leaves the template's, so only a template
    /// converted from the same calibration can stand in for them.</summary>
    public static IReadOnlySet<string> QParamsOutsideStateDict { get; } = new HashSet<string>(StringComparer.Ordinal) { "QuantizedHardswish", "QuantizedELU", "QuantizedPReLU" };

    /// <summary>Every quantized layer type by <see cref="QuantizedLayer.TypeName"/>: adding one is adding an entry.</summary>
    private static readonly ImmutableDictionary<string, Format> Formats = new Dictionary<string, Format>
    {
        ["Quantize"] = new(
            l => OneElementQParams(l),
            r => r.Checked(() => QuantizedLayer.Quantize(r.Path, r.Scale("scale", 1), r.ZeroPoint("zero_point", 1), r.Template.DType!.Value), "scale")),
        ["DeQuantize"] = new(_ => [], r => r.Template),
        ["QFunctional"] = new(
            l => OutputQParams(l),
            r => r.Checked(() => QuantizedLayer.Functional(r.Path, new QFunctional(r.Scale("scale"), r.ZeroPoint("zero_point"))), "scale")),
        ["QuantizedLinear"] = LinearFormat,
        ["QuantizedLinearReLU"] = LinearFormat,
        // PyTorch 1.13's quantized Hardswish keeps its output scale and zero point as plain attributes, not buffers:
        // its state_dict holds nothing of them, and load_state_dict leaves the module's own, as Load leaves the
        // template's (a template that was never calibrated cannot stand in for them: fusion run refuses that case).
        ["QuantizedHardswish"] = new(_ => [], r => r.Template),
        // LeakyReLU keeps them as 0-d buffers; its slope is an attribute, the template's.
        ["QuantizedLeakyReLU"] = new(
            l => OutputQParams(l),
            r => r.Checked(() => QuantizedLayer.LeakyReLU(r.Path,
                new QuantizedLeakyReLU(r.Scale("scale"), r.ZeroPoint("zero_point"), ((QuantizedLeakyReLU)r.Template.Module!).NegativeSlope)), "scale")),
        // LayerNorm: its weight and bias when it has elementwise affine (no key otherwise), then 0-d qparams.
        ["QuantizedLayerNorm"] = new(
            l =>
            {
                var n = (QuantizedLayerNorm)l.Module!;
                return [.. n.Weight is null ? [] : new (string, object?)[] { ("weight", n.Weight), ("bias", n.Bias) }, .. OutputQParams(l)];
            },
            r =>
            {
                var t = (QuantizedLayerNorm)r.Template.Module!;
                int[] shape = [.. t.NormalizedShape];
                var (weight, bias) = t.Weight is null ? (null, null) : (r.Float("weight", shape), r.Float("bias", shape));
                var (scale, zp) = (r.Scale("scale"), r.ZeroPoint("zero_point"));
                return r.Checked(() => QuantizedLayer.LayerNorm(r.Path, new QuantizedLayerNorm(shape, weight, bias, t.Eps, scale, zp)), "weight");
            }),
        // ELU keeps its qparams as plain attributes, as Hardswish does.
        ["QuantizedELU"] = new(_ => [], r => r.Template),
        // PReLU keeps its qparams and its quantized slopes as plain attributes: its state_dict is empty.
        ["QuantizedPReLU"] = new(_ => [], r => r.Template),
        // ReLU6 has no parameters at all.
        ["QuantizedReLU6"] = new(_ => [], r => r.Template),
    }.Concat(QuantizedConv.TypeNames.Select(t => KeyValuePair.Create(t, ConvFormat)))
     .Concat(QuantizedConvTranspose.TypeNames.Select(t => KeyValuePair.Create(t, ConvTransposeFormat)))
     .Concat(QuantizedBatchNorm.TypeNames.Select(t => KeyValuePair.Create(t, BatchNormFormat)))
     .Concat(new[] { "QuantizedGroupNorm", "QuantizedInstanceNorm1d", "QuantizedInstanceNorm2d", "QuantizedInstanceNorm3d" }.Select(t => KeyValuePair.Create(t, GroupNormFormat)))
     .ToImmutableDictionary(StringComparer.Ordinal);

    private static Format ConvFormat => new(
        l => [("weight", ToTorch(l.Weight!)), ("bias", l.Bias), .. OutputQParams(l)],
        r =>
        {
            var t = (QuantizedConv)r.Template.Module!;
            var (weight, bias) = (r.Weight("weight", t.Weight), r.Bias("bias", t.Bias));
            var (scale, zp) = (r.Scale("scale"), r.ZeroPoint("zero_point"));
            return r.Checked(() => QuantizedLayer.Conv(r.Path,
                new QuantizedConv(weight, bias, scale, zp, [.. t.Stride], [.. t.Padding], [.. t.Dilation], t.Groups, t.FusedReLU)), "weight");
        });

    /// <summary>A quantized ConvTranspose1d/2d/3d: the keys of a quantized convolution (its <c>_ConvNd</c> base writes
    /// them), the weight [C_in, C_out / groups, *kernel] per tensor.</summary>
    private static Format ConvTransposeFormat => new(
        l => [("weight", ToTorch(l.Weight!)), ("bias", l.Bias), .. OutputQParams(l)],
        r =>
        {
            var t = (QuantizedConvTranspose)r.Template.Module!;
            var (weight, bias) = (r.Weight("weight", t.Weight), r.Bias("bias", t.Bias));
            var (scale, zp) = (r.Scale("scale"), r.ZeroPoint("zero_point"));
            return r.Checked(() => QuantizedLayer.ConvTranspose(r.Path, new QuantizedConvTranspose(weight, bias, scale, zp, [.. t.Stride], [.. t.Padding],
                new int[t.Rank], [.. t.Dilation], t.Groups)), "weight");
        });

    /// <summary>A quantized batch norm: the float module's parameters, running statistics and <c>num_batches_tracked</c>
    /// (PyTorch's <c>_BatchNorm</c> keys, _metadata version 2), then the output qparams as one-element tensors, because
    /// <c>from_float</c> assigns <c>calculate_qparams()</c>'s results to them as they are (PyTorch keeps the zero point
    /// int32; <c>load_state_dict</c> copies the int64 written here into it).</summary>
    private static Format BatchNormFormat => new(
        l =>
        {
            var b = (QuantizedBatchNorm)l.Module!;
            return [("weight", b.Weight), ("bias", b.Bias), ("running_mean", b.RunningMean), ("running_var", b.RunningVar),
                ("num_batches_tracked", Tensor.ScalarInt64(b.NumBatchesTracked)), .. OneElementQParams(l)];
        },
        r =>
        {
            var t = (QuantizedBatchNorm)r.Template.Module!;
            int c = t.Weight.Count;
            var (weight, bias, mean, var) = (r.Float("weight", c), r.Float("bias", c), r.Float("running_mean", c), r.Float("running_var", c));
            var tracked = r.ZeroPoint("num_batches_tracked");
            var (scale, zp) = (r.Scale("scale", 1), r.ZeroPoint("zero_point", 1));
            return r.Checked(() => QuantizedLayer.BatchNorm(r.Path,
                new QuantizedBatchNorm(t.Rank, weight, bias, mean, var, t.Eps, scale, zp, t.FusedReLU, tracked)), "weight");
        },
        ("", 2));

    /// <summary>A quantized GroupNorm or InstanceNorm: as LayerNorm, its weight and bias [C] where it has affine
    /// parameters, then 0-d qparams.</summary>
    private static Format GroupNormFormat => new(
        l =>
        {
            var g = (QuantizedGroupNorm)l.Module!;
            return [.. g.Weight is null ? [] : new (string, object?)[] { ("weight", g.Weight), ("bias", g.Bias) }, .. OutputQParams(l)];
        },
        r =>
        {
            var t = (QuantizedGroupNorm)r.Template.Module!;
            var (weight, bias) = t.Weight is null ? (null, null) : (r.Float("weight", t.NumChannels), r.Float("bias", t.NumChannels));
            var (scale, zp) = (r.Scale("scale"), r.ZeroPoint("zero_point"));
            return r.Checked(() => QuantizedLayer.GroupNorm(r.Path, r.Template.TypeName, new QuantizedGroupNorm(t.NumGroups, t.NumChannels, weight, bias, t.Eps, scale, zp)), "weight");
        });

    private static Format LinearFormat => new(
        l => [.. OutputQParams(l), ("_packed_params.dtype", new TorchDType("qint8")), ("_packed_params._packed_params", new object?[] { ToTorch(l.Weight!), l.Bias })],
        r =>
        {
            var t = (QuantizedLinear)r.Template.Module!;
            var (scale, zp) = (r.Scale("scale"), r.ZeroPoint("zero_point"));
            r.PackedDType("_packed_params.dtype");
            var (weight, bias) = r.Packed("_packed_params._packed_params", t.Weight, t.Bias);
            return r.Checked(() => QuantizedLayer.Linear(r.Path, r.Template.TypeName, new QuantizedLinear(weight, bias, scale, zp, t.FusedReLU)), "_packed_params._packed_params");
        },
        ("", 3), ("_packed_params", 3));

    /// <summary>Output qparams as the [1] float32 scale and [1] int64 zero point buffers of Quantize and batch norm.</summary>
    private static IEnumerable<(string, object?)> OneElementQParams(QuantizedLayer l)
        => [("scale", Tensor.FromFloat32([(float)l.Scale!.Value], 1)), ("zero_point", Tensor.FromInt64([l.ZeroPoint!.Value], 1))];

    private static IEnumerable<(string, object?)> OutputQParams(QuantizedLayer l)
        => [("scale", Tensor.FromFloat32([(float)l.Scale!.Value])), ("zero_point", Tensor.ScalarInt64(l.ZeroPoint!.Value))];

    /// <summary>
    /// Writes <paramref name="model"/>'s state_dict as PyTorch's converted model holds it, as a <c>torch.save</c> zip
    /// that <c>load_state_dict(torch.load(path), strict=True)</c> takes (through a temporary file: nothing is left on failure).
    /// </summary>
    /// <exception cref="ModelFormatException">A layer type without an entry in the format table, or the file cannot be written.</exception>
    public static void Save(QuantizedModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        TorchCheckpoint.WriteValues(path, Entries(model, path));
    }

    /// <summary>The keys, values and versions <see cref="Save"/> writes, in PyTorch's order (module by module, depth first,
    /// a module's own entries before its children's).</summary>
    internal static TorchValueState Entries(QuantizedModel model, string path)
    {
        var items = new List<KeyValuePair<string, object?>>();
        var versions = new List<KeyValuePair<string, long>>();
        Walk(model, model.FloatModel, "",
            (layerPath, layer, format) =>
            {
                foreach (var (key, value) in format.Save(layer)) items.Add(new(ModulePath.Join(layerPath, key), value));
                foreach (var (module, version) in format.Versions) versions.Add(new(module.Length == 0 ? layerPath : ModulePath.Join(layerPath, module), version));
            },
            (key, t) => items.Add(new(key, t)), path);
        return new TorchValueState(items, versions);
    }

    /// <summary>
    /// Reads a converted model's state_dict saved by PyTorch (<c>torch.save(qmodel.state_dict(), path)</c>) or by
    /// <see cref="Save"/> into a new model with <paramref name="model"/>'s structure: every quantized layer takes the
    /// file's weights, biases, scales and zero points (its geometry, fused ReLU and Quantize dtype stay the template's, as
    /// they do in PyTorch, where they are not part of the state_dict), and modules kept float take their float tensors.
    /// The template's own parameters do not matter: a model converted without calibration serves.
    /// </summary>
    /// <param name="model">The converted model whose structure the file must match (<see cref="EagerQuantization.Convert"/>).</param>
    /// <param name="path">A <c>torch.save</c> zip of a quantized state_dict.</param>
    /// <returns>The model with the file's parameters; <paramref name="model"/> is unchanged.</returns>
    /// <exception cref="ModelFormatException">The file cannot be read, names a global outside the quantized allowlist, or
    /// disagrees with the model (the message names the file and the key; see the class remarks).</exception>
    public static QuantizedModel Load(QuantizedModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(path);
        var state = TorchCheckpoint.ReadQuantized(path);
        var given = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (k, v) in state.Items) given[k] = v;
        var used = new HashSet<string>(StringComparer.Ordinal);
        var layers = ImmutableDictionary.CreateBuilder<string, QuantizedLayer>(StringComparer.Ordinal);
        var floats = new List<KeyValuePair<string, Tensor>>();
        Walk(model, model.FloatModel, "",
            (layerPath, layer, format) => layers[layerPath] = format.Load(new LayerReader(path, layerPath, layer, given, used)),
            (key, own) =>
            {
                if (!given.TryGetValue(key, out var v)) throw new ModelFormatException(path, key, "is missing: the model holds this float tensor (a module kept float)");
                used.Add(key);
                if (v is not Tensor t || t.DType != own.DType || !t.Shape.SequenceEqual(own.Shape))
                    throw new ModelFormatException(path, key, $"is {Describe(v)}, but the model holds a {own.DType} tensor of shape {Tensor.ShapeString(own.Shape)}");
                floats.Add(new(key, t));
            }, path);
        var unexpected = state.Items.Select(kv => kv.Key).Where(k => !used.Contains(k)).ToList();
        if (unexpected.Count > 0)
            throw new ModelFormatException(path, unexpected[0],
                $"is not a key of this converted model ({unexpected.Count} unexpected key(s): {string.Join(", ", unexpected.Take(5))}{(unexpected.Count > 5 ? ", ..." : "")}); " +
                "was the file saved from a model converted from the same float model, with a qconfig on the same modules?");
        var floatModel = floats.Count == 0 ? model.FloatModel : StateDict.Load(model.FloatModel, floats, strict: false);
        return new QuantizedModel(floatModel, layers.ToImmutable());
    }

    /// <summary>Visits the model as PyTorch's <c>state_dict()</c> does: a quantized layer through its format (its float
    /// module's subtree is what convert replaced), any other module's own float tensors, then its children.</summary>
    private static void Walk(QuantizedModel model, Module m, string modulePath, Action<string, QuantizedLayer, Format> layer,
        Action<string, Tensor> floatTensor, string file)
    {
        if (model.Layers.TryGetValue(modulePath, out var q))
        {
            if (!Formats.TryGetValue(q.TypeName, out var format))
                throw new ModelFormatException(file, modulePath, $"the quantized layer type {q.TypeName} has no state_dict format here");
            layer(modulePath, q, format);
            return;
        }
        foreach (var (name, t) in m.State) floatTensor(ModulePath.Join(modulePath, name), t);
        foreach (var c in m.Children) Walk(model, c.Module, ModulePath.Join(modulePath, c.Name), layer, floatTensor, file);
    }

    /// <summary>A quantized tensor as the file holds it.</summary>
    private static TorchQTensor ToTorch(QuantizedTensor q)
        => new(q.DType == QuantizedDType.QInt8, [.. q.Dimensions], q.IntRepr(), [.. q.Scales], [.. q.ZeroPoints], q.Axis);

    private static string Describe(object? v) => v switch
    {
        null => "None",
        Tensor t => $"a {t.DType} tensor of shape {Tensor.ShapeString(t.Shape)}",
        TorchQTensor q => $"a {(q.Signed ? "qint8" : "quint8")} tensor of shape {Tensor.ShapeString(q.Shape)}",
        TorchDType d => $"the dtype torch.{d.Name}",
        object?[] tuple => $"a tuple of {tuple.Length}",
        _ => v.GetType().Name,
    };

    /// <summary>Reads one layer's entries from the file, each refused with the file and the key when it does not fit.</summary>
    private sealed class LayerReader(string file, string path, QuantizedLayer template, Dictionary<string, object?> given, HashSet<string> used)
    {
        /// <summary>The layer's path.</summary>
        public string Path => path;

        /// <summary>The model's layer at that path, whose structure the file's entries must fit.</summary>
        public QuantizedLayer Template => template;

        private string Key(string name) => ModulePath.Join(path, name);

        private object? Take(string name)
        {
            var key = Key(name);
            if (!given.TryGetValue(key, out var v))
                throw new ModelFormatException(file, key, $"is missing: the model's {template.TypeName} at '{path}' has it in PyTorch's state_dict");
            used.Add(key);
            return v;
        }

        private ModelFormatException Fail(string name, string problem, Exception? inner = null) => new(file, Key(name), problem, inner);

        private Tensor Tensor(string name, DType dtype, params int[] shape)
        {
            var v = Take(name);
            if (v is not Tensors.Tensor t || t.DType != dtype || !t.Shape.SequenceEqual(shape))
                throw Fail(name, $"is {Describe(v)}, but {template.TypeName} keeps a {dtype} tensor of shape {Tensors.Tensor.ShapeString(shape)} here");
            return t;
        }

        /// <summary>An output scale: a float32 tensor of <paramref name="shape"/> (0-d for modules, [1] for Quantize's buffer), positive and finite.</summary>
        public double Scale(string name, params int[] shape)
        {
            double s = Tensor(name, DType.Float32, shape).Float32[0];
            if (!(s > 0) || !double.IsFinite(s)) throw Fail(name, $"the scale is {s}; a scale must be positive and finite");
            return s;
        }

        /// <summary>A float32 tensor of <paramref name="shape"/> (a batch norm's or LayerNorm's parameters and statistics).</summary>
        public Tensor Float(string name, params int[] shape) => Tensor(name, DType.Float32, shape);

        /// <summary>An output zero point: an int64 tensor of <paramref name="shape"/> (its range is checked by the layer).</summary>
        public long ZeroPoint(string name, params int[] shape) => Tensor(name, DType.Int64, shape).Int64[0];

        /// <summary>A qint8 weight of the template weight's shape, its qparams checked.</summary>
        public QuantizedTensor Weight(string name, QuantizedTensor like) => Weight(name, Take(name), like);

        private QuantizedTensor Weight(string name, object? v, QuantizedTensor like)
        {
            if (v is not TorchQTensor q)
                throw Fail(name, $"is {Describe(v)}, not a quantized weight (qint8 tensor of shape {Tensors.Tensor.ShapeString([.. like.Dimensions])})");
            if (!q.Signed) throw Fail(name, "the weight is quint8; PyTorch's quantized modules keep qint8 weights");
            if (!q.Shape.AsSpan().SequenceEqual(like.Dimensions.AsSpan()))
                throw Fail(name, $"the weight has shape {Tensors.Tensor.ShapeString(q.Shape)}, but the model's is {Tensors.Tensor.ShapeString([.. like.Dimensions])}");
            try
            {
                return q.Axis is { } axis
                    ? QuantizedTensor.FromIntRepr(q.Values, q.Shape, q.Scales, q.ZeroPoints, axis, QuantizedDType.QInt8)
                    : QuantizedTensor.FromIntRepr(q.Values, q.Shape, q.Scales[0], q.ZeroPoints[0], QuantizedDType.QInt8);
            }
            catch (ArgumentException e) { throw Fail(name, $"the weight's quantization does not fit: {Plain(e)}", e); }
        }

        /// <summary>A float32 bias [C_out] where the model has one, None where it has none.</summary>
        public Tensor? Bias(string name, Tensor? like) => Bias(name, Take(name), like);

        private Tensor? Bias(string name, object? v, Tensor? like)
        {
            if (like is null)
                return v is null ? null : throw Fail(name, $"is {Describe(v)}, but the model's {template.TypeName} at '{path}' has no bias (None)");
            if (v is not Tensors.Tensor t || t.DType != DType.Float32 || !t.Shape.SequenceEqual(like.Shape))
                throw Fail(name, $"is {Describe(v)}, but the model's bias is a float32 tensor of shape {Tensors.Tensor.ShapeString(like.Shape)}");
            return t;
        }

        /// <summary>A quantized Linear's packed-params dtype: <c>torch.qint8</c> (static quantization).</summary>
        public void PackedDType(string name)
        {
            var v = Take(name);
            if (v is not TorchDType { Name: "qint8" })
                throw Fail(name, $"is {Describe(v)}; a statically quantized Linear packs qint8 weights (torch.qint8)");
        }

        /// <summary>A quantized Linear's packed params: the tuple (qint8 weight, bias or None).</summary>
        public (QuantizedTensor Weight, Tensor? Bias) Packed(string name, QuantizedTensor weight, Tensor? bias)
        {
            var v = Take(name);
            if (v is not object?[] { Length: 2 } pair)
                throw Fail(name, $"is {Describe(v)}, not the packed params (weight, bias)");
            return (Weight(name, pair[0], weight), Bias(name, pair[1], bias));
        }

        /// <summary>Builds the layer, turning a refusal of its constructor (a zero point outside the dtype, a weight
        /// zero point the onednn kernels do not take) into an error naming the file and the key: the output zero point's
        /// or scale's when the refusal names that parameter, else <paramref name="name"/>.</summary>
        public QuantizedLayer Checked(Func<QuantizedLayer> build, string name)
        {
            try { return build(); }
            catch (ArgumentException e)
            {
                var key = e.ParamName switch { "zeroPoint" => "zero_point", "scale" => "scale", _ => name };
                throw Fail(key, $"the {template.TypeName} at '{path}' refuses the file's parameters: {Plain(e)}", e);
            }
        }

        /// <summary>A refusal's message in one line, without .NET's "(Parameter 'x')" and "Actual value was" additions,
        /// which name our code rather than the file.</summary>
        private static string Plain(ArgumentException e)
        {
            var m = e.Message.Split('\n')[0];
            return e.ParamName is { } p ? m.Replace($" (Parameter '{p}')", "", StringComparison.Ordinal) : m;
        }
    }
}
