using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Onnx.Proto;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// The graph operations and carried library modules beyond the first vocabulary (those torchvision's networks use:
/// sigmoid, GELU, softmax, layer_norm, mean, permute, matmul, einsum, functional pooling, chunk and split, tensor
/// constants and the tables they index, and the Python
/// arithmetic on sizes that a traced graph does), written as standard ONNX operators with the engine's meaning. Python
/// values (sizes, tuples) are computed here from the static shapes, as the engine computes them from its tensors.
/// </summary>
internal sealed class OperatorExporter(OnnxExporter exporter)
{
    /// <summary>What <see cref="Call"/> returns for an operation it does not write.</summary>
    public static readonly object NotHandled = new();

    private OnnxGraphWriter W => exporter.Writer;

    private int Opset => exporter.Options.Opset;

    /// <summary>The value of <paramref name="a"/> written at <paramref name="path"/>: a tensor, a Python value or a tuple;
    /// <see cref="NotHandled"/> for an operation this class does not write.</summary>
    /// <exception cref="GraphCallException">An argument does not fit, or the call has no ONNX form (the message says why).</exception>
    public object? Call(OpCall a, string path)
    {
        try { return Write(a, path); }
        catch (Problem p) { throw new GraphCallException(a.Node, p.Message); }
    }

    private object? Write(OpCall a, string path)
    {
        var self = a.Op.Parameters[0].Name;
        OnnxValue X() => a.Get<OnnxValue>(self, "a tensor");
        switch (a.Op.Name)
        {
            case "sigmoid":
                return Unary("Sigmoid", X(), path);
            case "relu6":
                return exporter.Activation(ActivationKind.ReLU6, X(), path);
            case "hardtanh":
                return Clip(X(), (float)a.Double("min_val"), (float)a.Double("max_val"), path);
            case "gelu":
                return Gelu(X(), a.Value("approximate") as string ?? "none", path);
            case "softmax":
                if (a.Value("dtype") is not null) throw a.Error("dtype", "None (a softmax with a dtype has no ONNX form here)");
                return Softmax(X(), a.OptionalLong("dim") ?? throw a.Error("dim", "an integer (softmax without a dim is deprecated in PyTorch)"), path);
            case "layer_norm":
                return LayerNorm(X(), a.IntList("normalized_shape"), a.Value("weight") as OnnxValue, a.Value("bias") as OnnxValue, a.Double("eps"), path);
            case "dropout":
            case "stochastic_depth":
                return !a.Flag("training") || a.Double("p") == 0 ? X() : throw a.Error("training", "False (in training mode the result is random)");
            case "matmul":
            case "bmm":
                return MatMul(X(), a.Get<OnnxValue>(a.Op.Parameters[1].Name, "a tensor"), path);
            case "mean":
                if (a.Value("dtype") is not null) throw a.Error("dtype", "None");
                return Mean(X(), a.Value("dim") is null ? null : a.IntList("dim"), a.Flag("keepdim"), path);
            case "permute":
                return Permute(X(), a.IntList("dims"), path);
            case "transpose":
                return Swap(X(), a, "dim0", "dim1", path);
            case "avg_pool2d":
            {
                if (a.Value("divisor_override") is not null) throw a.Error("divisor_override", "None");
                var kernel = a.IntList("kernel_size");
                return exporter.AvgPool(AvgPool2d.Create(kernel, a.IntListOr("stride", kernel), a.IntList("padding"), a.Flag("ceil_mode"), a.Flag("count_include_pad")), X(), path);
            }
            case "max_pool2d":
            {
                if (a.Flag("return_indices")) throw a.Error("return_indices", "False");
                var kernel = a.IntList("kernel_size");
                return exporter.MaxPool(MaxPool2d.Create(kernel, a.IntListOr("stride", kernel), a.IntList("padding"), a.IntList("dilation"), a.Flag("ceil_mode")), X(), path);
            }
            case "chunk":
            {
                var x = X();
                var axis = Axis(a, "dim", x.Rank);
                var chunks = a.Long("chunks");
                if (chunks < 1) throw a.Error("chunks", "a positive integer");
                var size = (int)Math.Max(1, (x.Shape[axis] + chunks - 1) / chunks);
                return Split(x, axis, Sizes(x.Shape[axis], size), path);
            }
            case "split":
            {
                var x = X();
                var axis = Axis(a, "dim", x.Rank);
                var sizes = a.Op.Parameters[1].Name;
                var parts = a.Value(sizes) is long size ? Sizes(x.Shape[axis], (int)Math.Max(1, size)) : a.IntList(sizes);
                if (parts.Sum() != x.Shape[axis] || parts.Any(p => p < 0)) throw a.Error(sizes, $"sizes that add up to {x.Shape[axis]}");
                return Split(x, axis, parts, path);
            }
            case "expand":
                return Expand(a, X(), a.IntList("size"), path);
            case "floordiv":
                return (a.Value(self), a.Value("other")) switch
                {
                    (long p, long q) when q != 0 => (long)Math.Floor(p / (double)q),
                    _ => throw a.Error("other", "Python integers (a tensor floor division has no ONNX form here)"),
                };
            case "eq":
                return a.Value(self) is long or double or bool or string && a.Value("other") is long or double or bool or string
                    ? Equals(a.Value(self), a.Value("other"))
                    : throw a.Error("other", "Python values (a tensor comparison has no ONNX form here)");
            case "size":
            {
                var x = X();
                return a.OptionalLong("dim") is { } dim ? (long)x.Shape[Axis(a, "dim", x.Rank)] : Shape(x);
            }
            case "dim":
                return (long)X().Rank;
            case "getattr":
                return (a.Value(self), a.Value("name")) switch
                {
                    (OnnxValue x, "shape") => Shape(x),
                    (OnnxValue x, "ndim") => (long)x.Rank,
                    _ => throw a.Error("name", "'shape' or 'ndim' of a tensor"),
                };
            case "getitem":
                return a.Value(self) is OnnxValue table && a.Value("b") is OnnxValue index
                    ? W.Node("Gather", path, [table.Name, index.Name], [.. index.Shape, .. table.Shape[1..]], OnnxGraphWriter.Int("axis", 0))
                    : GetItem(a, a.Value(self), a.Value("b"));
            case "tensor":
            {
                Tensor t;
                try { t = TensorLiteral.Read(a.Value("data"), a.DTypeName("dtype")); }
                catch (Exception e) when (e is ArgumentException or NotSupportedException) { throw new Problem(e.Message); }
                return new OnnxValue(W.Initializer(path, t), [.. t.Shape]);
            }
            case "swapaxes":
                return Swap(X(), a, "axis0", "axis1", path);
            case "einsum":
                return Einsum(a, path);
            case "interpolate":
                return Resize(X(), InterpolationOf(a), path);
            case "_assert":
                return a.Value("condition") is true ? null : throw a.Error("condition", "a condition that holds for the export's input shape");
            default:
                return NotHandled;
        }
    }

    /// <summary>The <c>F.interpolate</c> call <paramref name="a"/> written on <paramref name="x"/>, which the QDQ export
    /// passes in place of the call's input (the same integers dequantized in steps of their scale).</summary>
    /// <exception cref="GraphCallException">The arguments do not fit, or the call has no ONNX form (the message says why).</exception>
    public OnnxValue Interpolate(OpCall a, OnnxValue x, string path)
    {
        try { return Resize(x, InterpolationOf(a), path); }
        catch (Problem p) { throw new GraphCallException(a.Node, p.Message); }
    }

    /// <summary>The interpolation an <c>F.interpolate</c> call asks for, checked as PyTorch checks it.</summary>
    private static Interpolation InterpolationOf(OpCall a)
    {
        try { return Interpolation.FromArguments(a.Value("size"), a.Value("scale_factor"), a.Value("mode"), a.Value("align_corners"), a.Value("recompute_scale_factor"), a.Value("antialias")); }
        catch (ArgumentException e) { throw new Problem(e.Message); }
    }

    /// <summary>A library module the engine computes although it is carried as opaque (nn.Sigmoid, nn.GELU, nn.Hardtanh,
    /// nn.LeakyReLU, nn.ELU, nn.Softmax, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d/2d/3d, the dropouts), or null for another.</summary>
    public OnnxValue? Carried(OpaqueModule m, OnnxValue x, string path)
    {
        try { return WriteCarried(m, x, path); }
        catch (Problem p) { throw OnnxExporter.Refuse(m, path, p.Message); }
    }

    private OnnxValue? WriteCarried(OpaqueModule m, OnnxValue x, string path)
    {
        if (m.Namespace != "torch.nn") return null;
        try { return WriteLibraryModule(m, x, path); }
        catch (ArgumentException e) { throw OnnxExporter.Refuse(m, path, e.Message); }
    }

    /// <summary>A torch.nn module the engine computes, from its recorded attributes (read by <see cref="OpaqueModule"/>,
    /// whose readers throw <see cref="ArgumentException"/> naming the attribute).</summary>
    private OnnxValue? WriteLibraryModule(OpaqueModule m, OnnxValue x, string path)
    {
        switch (m.TypeName)
        {
            case "Sigmoid":
                return Unary("Sigmoid", x, path);
            case "Tanh":
                return Unary("Tanh", x, path);
            case "GELU":
                return Gelu(x, m.Argument("approximate") as string ?? "none", path);
            case "Hardtanh":
                return Clip(x, (float)m.NumberArgument("min_val"), (float)m.NumberArgument("max_val"), path);
            case "Softmax":
                return m.Argument("dim") is long dim ? Softmax(x, dim, path) : throw OnnxExporter.Refuse(m, path, "Softmax without a dim has no ONNX form here");
            case "LayerNorm":
            {
                OnnxValue? Param(string name) => m.State.TryGet(name) is { } t ? new OnnxValue(W.Initializer(ModulePath.Join(path, name), t), [.. t.Shape]) : null;
                return LayerNorm(x, m.SizesArgument("normalized_shape"), Param("weight"), Param("bias"), m.NumberArgument("eps"), path);
            }
            case "LeakyReLU":
                return W.Node("LeakyRelu", path, [x.Name], x.Shape, OnnxGraphWriter.Float("alpha", (float)m.NumberArgument("negative_slope")));
            case "ELU":
                return W.Node("Elu", path, [x.Name], x.Shape, OnnxGraphWriter.Float("alpha", (float)m.NumberArgument("alpha")));
            case "GroupNorm":
                return GroupNorm(x, m.CountArgument("num_groups"), m.CountArgument("num_channels"), m.State.TryGet("weight"), m.State.TryGet("bias"), m.NumberArgument("eps"), path);
            case "InstanceNorm1d" or "InstanceNorm2d" or "InstanceNorm3d":
            {
                if (m.FlagArgument("track_running_stats", false))
                    throw new Problem($"{m.TypeName} with track_running_stats=True normalises by its running statistics in eval mode, which the engine does not compute");
                var rank = m.TypeName[^2] - '0';
                if (x.Rank != rank + 2) throw new Problem($"{m.TypeName} takes a batched input of rank {rank + 2}, got {x.ShapeText}");
                return GroupNorm(x, x.Shape[1], m.CountArgument("num_features"), m.State.TryGet("weight"), m.State.TryGet("bias"), m.NumberArgument("eps"), path);
            }
            case "Upsample" or "UpsamplingNearest2d" or "UpsamplingBilinear2d":
                return Resize(x, Interpolation.FromModule(m), path);
            case "Dropout1d" or "Dropout2d" or "Dropout3d" or "AlphaDropout" or "FeatureAlphaDropout":
                return !m.Training || m.NumberArgument("p") == 0 ? x : throw OnnxExporter.Refuse(m, path, "dropout in training mode has a random result; call Eval() to export its inference form (the identity)");
            default:
                return null;
        }
    }

    // ---- operators ------------------------------------------------------------------------------------------

    private OnnxValue Unary(string op, OnnxValue x, string path) => W.Node(op, path, [x.Name], x.Shape);

    private OnnxValue Clip(OnnxValue x, float min, float max, string path)
        => W.Node("Clip", path, [x.Name, W.Scalar(min), W.Scalar(max)], x.Shape);

    /// <summary>GELU: ONNX's Gelu from opset 20, before it the formula PyTorch documents (erf, or the tanh approximation).</summary>
    private OnnxValue Gelu(OnnxValue x, string approximate, string path)
    {
        if (approximate is not ("none" or "tanh")) throw new Problem($"gelu approximate='{approximate}' is not 'none' or 'tanh'");
        if (Opset >= 20) return W.Node("Gelu", path, [x.Name], x.Shape, OnnxGraphWriter.String("approximate", approximate));
        OnnxValue Op(string op, string name, params string[] inputs) => W.Node(op, path + "/" + name, inputs, x.Shape);
        OnnxValue inner;
        if (approximate == "none")
            inner = Op("Erf", "Erf", Op("Mul", "Scale", x.Name, W.Scalar((float)(1 / Math.Sqrt(2)))).Name);
        else
        {
            var cube = Op("Mul", "Cube", Op("Mul", "Square", x.Name, x.Name).Name, x.Name);
            var sum = Op("Add", "Sum", x.Name, Op("Mul", "Cubic", cube.Name, W.Scalar(0.044715f)).Name);
            inner = Op("Tanh", "Tanh", Op("Mul", "Scale", sum.Name, W.Scalar((float)Math.Sqrt(2 / Math.PI))).Name);
        }
        var half = Op("Mul", "Half", x.Name, W.Scalar(0.5f));
        return W.Node("Mul", path, [half.Name, Op("Add", "One", inner.Name, W.Scalar(1f)).Name], x.Shape);
    }

    private OnnxValue Softmax(OnnxValue x, long dim, string path)
    {
        var axis = Dimensions.Wrap(dim, x.Rank) ?? throw new Problem($"softmax dim {dim} is out of range for {x.ShapeText}");
        return W.Node("Softmax", path, [x.Name], x.Shape, OnnxGraphWriter.Int("axis", axis));
    }

    private OnnxValue LayerNorm(OnnxValue x, int[] normalized, OnnxValue? weight, OnnxValue? bias, double eps, string path)
    {
        if (Opset < 17) throw new Problem($"layer_norm needs ONNX's LayerNormalization, opset 17 or later (this export is opset {Opset})");
        if (normalized.Length == 0 || normalized.Length > x.Rank || !x.Shape[^normalized.Length..].SequenceEqual(normalized))
            throw new Problem($"layer_norm over [{string.Join(", ", normalized)}] does not fit an input of shape {x.ShapeText}");
        var scale = weight?.Name ?? W.Initializer(ModulePath.Join(path, "weight"), Tensor.Full(1f, normalized));
        string[] inputs = bias is null ? [x.Name, scale] : [x.Name, scale, bias.Name];
        return W.Node("LayerNormalization", path, inputs, x.Shape,
            OnnxGraphWriter.Int("axis", x.Rank - normalized.Length), OnnxGraphWriter.Float("epsilon", (float)eps));
    }

    /// <summary>
    /// GroupNorm (an instance norm is one group per channel): each sample's groups normalised by their own mean and
    /// biased variance, then the per-channel weight and bias. ONNX's GroupNormalization is opset 18 (and changed its
    /// scale to per channel in 21), so it is written as InstanceNormalization (opset 6), directly when every channel is
    /// its own group, else on the input reshaped to [N, groups, rest] with unit scale and zero bias, reshaped back and
    /// followed by the weight's Mul and the bias's Add over [C, 1, ...].
    /// </summary>
    private OnnxValue GroupNorm(OnnxValue x, int groups, int channels, Tensor? weight, Tensor? bias, double eps, string path)
    {
        if (x.Rank < 2 || x.Shape[1] != channels || groups <= 0 || channels % groups != 0)
            throw new Problem($"group norm of {groups} groups over {channels} channels does not fit an input of shape {x.ShapeText}");
        var epsilon = OnnxGraphWriter.Float("epsilon", (float)eps);
        if (groups == channels)
        {
            var scale = W.Initializer(ModulePath.Join(path, "weight"), weight ?? Tensor.Full(1f, channels));
            var shift = W.Initializer(ModulePath.Join(path, "bias"), bias ?? Tensor.Zeros(channels));
            return W.Node("InstanceNormalization", path, [x.Name, scale, shift], x.Shape, epsilon);
        }
        var rest = x.Shape[1..].Aggregate(1, (a, d) => checked(a * d)) / groups;
        // 0 copies the batch size, so a dynamic batch stays dynamic.
        var grouped = W.Node("Reshape", path + "/Reshape", [x.Name, W.Int64s(0, groups, rest)], [x.Shape[0], groups, rest]);
        var normed = W.Node("InstanceNormalization", path, [grouped.Name, W.Initializer(path + "/ones", Tensor.Full(1f, groups)), W.Initializer(path + "/zeros", Tensor.Zeros(groups))],
            grouped.Shape, epsilon);
        var y = W.Node("Reshape", path + "/Unreshape", [normed.Name, W.Int64s([0, .. x.Shape[1..].Select(d => (long)d)])], x.Shape);
        // The weight and bias [C] as [C, 1, ...], broadcasting over the spatial axes.
        int[] column = [channels, .. Enumerable.Repeat(1, x.Rank - 2)];
        if (weight is not null) y = W.Node("Mul", path + "/Mul", [y.Name, W.Initializer(ModulePath.Join(path, "weight"), weight.Reshape(column))], x.Shape);
        if (bias is not null) y = W.Node("Add", path + "/Add", [y.Name, W.Initializer(ModulePath.Join(path, "bias"), bias.Reshape(column))], x.Shape);
        return y;
    }

    /// <summary>
    /// <c>F.interpolate</c> (and the upsampling modules) as ONNX's Resize with the attributes torch.onnx writes for it at
    /// opset 11 and later: nearest as <c>asymmetric</c> coordinates and <c>floor</c> rounding (PyTorch's source index
    /// min(floor(o · s), in − 1)), bilinear as <c>linear</c> with <c>half_pixel</c> coordinates (PyTorch's
    /// max(s · (o + 0.5) − 0.5, 0): ONNX Runtime clamps a negative coordinate to 0 as well) or <c>align_corners</c>. A
    /// scale factor the kernels take is written as Resize's scales, so the coordinates use it as PyTorch's kernels do;
    /// a size (or a recomputed scale factor) as its sizes, the batch and channels read from the input's shape so that
    /// a dynamic batch stays dynamic. PyTorch's NHWC nearest kernel (one channel or a 1×1 plane), and the engine with it,
    /// copies an output of the input's size and halves one of twice it whatever the scale factor; such an axis is written
    /// with the scale 1 or 2 that gives Resize the same rows. On a quantized input (a QDQ export) PyTorch's quantized
    /// kernel has none of those cases, and copies its input only when neither size changes.
    /// </summary>
    internal OnnxValue Resize(OnnxValue x, Interpolation spec, string path)
    {
        if (x.Rank != 4) throw new Problem($"interpolate ({spec.Mode}) takes a 4-d input [N, C, H, W] here, got {x.ShapeText}");
        int h = x.Shape[2], w = x.Shape[3];
        (int Height, int Width, double? ScaleHeight, double? ScaleWidth) output;
        try { output = spec.Output(h, w); }
        catch (ArgumentException e) { throw new Problem(e.Message); }
        var (oh, ow, sh, sw) = output;
        int[] shape = [x.Shape[0], x.Shape[1], oh, ow];
        string scales = "", sizes = "";
        if (sh is { } scaleH && sw is { } scaleW)
        {
            // Resize computes the output size as floor(in · scale) with the scale in float32; PyTorch's floor(in · scale)
            // is in float64. They agree but for a scale factor that float32 does not hold closely enough.
            float fh = (float)scaleH, fw = (float)scaleW;
            if (MathF.Floor(h * fh) != oh || MathF.Floor(w * fw) != ow)
                throw new Problem($"{spec}: ONNX's Resize computes the output size in float32 as {MathF.Floor(h * fh)} x {MathF.Floor(w * fw)}, PyTorch's is {oh} x {ow}; give interpolate a size instead");
            if (!spec.Bilinear && exporter.Hook?.Quantized(x) == true)
            {
                // PyTorch's quantized nearest upsampling copies its input when neither size changes, whatever the scale.
                if (oh == h && ow == w) (fh, fw) = (1f, 1f);
            }
            else if (!spec.Bilinear && Interpolation.TakesNhwcKernels(x.Shape[1], h, w))
            {
                // PyTorch's float NHWC kernel (one channel, or a 1x1 plane) copies an unchanged size and halves a doubled
                // one whatever the scale factor; a scale of exactly 1 or 2 makes Resize's floor(o / scale) do the same.
                fh = oh == h ? 1f : oh == 2 * h ? 2f : fh;
                fw = ow == w ? 1f : ow == 2 * w ? 2f : fw;
            }
            scales = W.Initializer(path + "/scales", Tensor.FromFloat32([1f, 1f, fh, fw], 4));
        }
        else
        {
            var batchAndChannels = W.Node("Slice", path + "/Slice", [W.Node("Shape", path + "/Shape", [x.Name], [4]).Name, W.Int64s(0), W.Int64s(2)], [2]);
            sizes = W.Node("Concat", path + "/Concat", [batchAndChannels.Name, W.Int64s(oh, ow)], [4], OnnxGraphWriter.Int("axis", 0)).Name;
        }
        AttributeProto[] attributes = spec.Bilinear
            ? [OnnxGraphWriter.String("mode", "linear"), OnnxGraphWriter.String("coordinate_transformation_mode", spec.AlignCorners ? "align_corners" : "half_pixel")]
            : [OnnxGraphWriter.String("mode", "nearest"), OnnxGraphWriter.String("coordinate_transformation_mode", "asymmetric"), OnnxGraphWriter.String("nearest_mode", "floor")];
        string[] inputs = sizes.Length == 0 ? [x.Name, "", scales] : [x.Name, "", "", sizes];
        return W.Node("Resize", path, inputs, shape, attributes);
    }

    private OnnxValue MatMul(OnnxValue a, OnnxValue b, string path)
    {
        if (a.Rank < 2 || b.Rank < 2 || a.Shape[^1] != b.Shape[^2]
            || Broadcast.Shape(a.Shape[..^2], b.Shape[..^2]) is not { } batch)
            throw new Problem($"matmul of shapes {a.ShapeText} and {b.ShapeText} (both at least matrices, inner sizes equal) has no ONNX form here");
        return W.Node("MatMul", path, [a.Name, b.Name], [.. batch, a.Shape[^2], b.Shape[^1]]);
    }

    private OnnxValue Mean(OnnxValue x, int[]? dims, bool keepdim, string path)
    {
        var axes = (dims ?? [.. Enumerable.Range(0, x.Rank)])
            .Select(d => Dimensions.Wrap(d, x.Rank) ?? throw new Problem($"mean dim {d} is out of range for {x.ShapeText}")).Distinct().Order().ToArray();
        var shape = keepdim
            ? x.Shape.Select((s, i) => axes.Contains(i) ? 1 : s).ToArray()
            : x.Shape.Where((_, i) => !axes.Contains(i)).ToArray();
        var keep = OnnxGraphWriter.Int("keepdims", keepdim ? 1 : 0);
        // Opset 18 moved the axes from an attribute to an input.
        return Opset >= 18
            ? W.Node("ReduceMean", path, [x.Name, W.Int64s([.. axes.Select(a => (long)a)])], shape, keep)
            : W.Node("ReduceMean", path, [x.Name], shape, OnnxGraphWriter.Ints("axes", axes), keep);
    }

    private OnnxValue Permute(OnnxValue x, int[] dims, string path)
    {
        var perm = dims.Select(d => Dimensions.Wrap(d, x.Rank) ?? -1).ToArray();
        if (perm.Length != x.Rank || perm.Order().Where((p, i) => p != i).Any())
            throw new Problem($"permute({string.Join(", ", dims)}) is not a permutation of the axes of {x.ShapeText}");
        return W.Node("Transpose", path, [x.Name], [.. perm.Select(p => x.Shape[p])], OnnxGraphWriter.Ints("perm", perm));
    }

    /// <summary>transpose and swapaxes: the two named axes exchanged.</summary>
    private OnnxValue Swap(OnnxValue x, OpCall a, string first, string second, string path)
    {
        var (d0, d1) = (Axis(a, first, x.Rank), Axis(a, second, x.Rank));
        var perm = Enumerable.Range(0, x.Rank).ToArray();
        (perm[d0], perm[d1]) = (perm[d1], perm[d0]);
        return Permute(x, perm, path);
    }

    /// <summary>ONNX's Einsum (opset 12), its equation as <see cref="EinsumEquation"/> reads it (spaces removed, the
    /// output written out), the output's shape from the letters' sizes.</summary>
    private OnnxValue Einsum(OpCall a, string path)
    {
        var operands = a.Value("operands") switch
        {
            OnnxValue one => [one],
            IReadOnlyList<object?> list => list.Select(v => v as OnnxValue ?? throw a.Error("operands", "tensors")).ToArray(),
            _ => throw a.Error("operands", "tensors"),
        };
        EinsumEquation eq;
        try { eq = EinsumEquation.Read(a.Get<string>("equation", "an equation"), [.. operands.Select(o => o.Shape)]); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException) { throw a.Error("equation", $"an equation that fits its operands ({e.Message})"); }
        if (Opset < 12) throw new Problem($"einsum needs ONNX's Einsum, opset 12 or later (this export is opset {Opset})");
        return W.Node("Einsum", path, [.. operands.Select(o => o.Name)], eq.OutputShape, OnnxGraphWriter.String("equation", eq.Text));
    }

    private object?[] Split(OnnxValue x, int axis, int[] sizes, string path)
    {
        var shapes = sizes.Select(s => x.Shape.Select((d, i) => i == axis ? s : d).ToArray()).ToArray();
        return [.. W.MultiNode("Split", path, [x.Name, W.Int64s([.. sizes.Select(s => (long)s)])], shapes, OnnxGraphWriter.Int("axis", axis))];
    }

    /// <summary>PyTorch's pieces of <paramref name="total"/> in steps of <paramref name="size"/> (the last may be smaller).</summary>
    private static int[] Sizes(int total, int size)
        => [.. Enumerable.Range(0, Math.Max(1, (total + size - 1) / size)).Select(i => Math.Min(size, total - i * size))];

    private OnnxValue Expand(OpCall a, OnnxValue x, int[] size, string path)
    {
        if (size.Length < x.Rank) throw a.Error("size", $"at least {x.Rank} sizes for {x.ShapeText}");
        var lead = size.Length - x.Rank;
        var shape = new int[size.Length];
        for (var i = 0; i < size.Length; i++)
        {
            var have = i < lead ? 1 : x.Shape[i - lead];
            shape[i] = size[i] == -1 && i >= lead ? have : size[i];
            if (shape[i] < 0 || have != 1 && have != shape[i]) throw a.Error("size", $"sizes that {x.ShapeText} expands to");
        }
        return W.Node("Expand", path, [x.Name, W.Int64s([.. shape.Select(s => (long)s)])], shape);
    }

    private static object?[] Shape(OnnxValue x) => [.. x.Shape.Select(d => (object?)(long)d)];

    private static object? GetItem(OpCall a, object? seq, object? index)
    {
        if (seq is not IReadOnlyList<object?> list) throw a.Error("a", "a tuple or list, or a tensor indexed by an int64 tensor (other tensor indexing has no ONNX form here)");
        try { return PySequence.GetItem(list, index); }
        catch (ArgumentException e) { throw a.Error("b", $"an index that fits ({e.Message})"); }
    }

    private static int Axis(OpCall a, string name, int rank)
        => Dimensions.Wrap(a.Long(name), rank) ?? throw a.Error(name, $"a dimension of a rank-{rank} tensor");

    /// <summary>Why a call has no ONNX form; the entry points turn it into the caller's kind of error.</summary>
    private sealed class Problem(string message) : Exception(message);
}
