using System.Collections.Frozen;
using System.Text.Json;

namespace Fusion.Dsl.Graphs;

/// <summary>
/// The table of graph operations this project understands: every torch function and tensor method a graph node may
/// call with a meaning here. A call outside the table is carried as an opaque operation (kept, written back, read
/// conservatively by the dataflow analysis) and is refused only by a consumer asked to compute it.
/// </summary>
public static class GraphOps
{
    private static OpParameter P(string name) => new(name);
    private static OpParameter Opt(string name, object? fallback = null) => new(name, true, fallback);

    private static readonly GraphOp[] All =
    [
        new(NodeOp.CallFunction, "add", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "mul", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "relu", [P("input"), Opt("inplace", false)], inplaceFlag: "inplace"),
        new(NodeOp.CallFunction, "hardsigmoid", [P("input"), Opt("inplace", false)], inplaceFlag: "inplace"),
        new(NodeOp.CallFunction, "flatten", [P("input"), Opt("start_dim", 0L), Opt("end_dim", -1L)]),
        new(NodeOp.CallFunction, "cat", [P("tensors"), Opt("dim", 0L)]),
        new(NodeOp.CallFunction, "adaptive_avg_pool2d", [P("input"), P("output_size")]),
        new(NodeOp.CallFunction, "reshape", [P("input"), P("shape")]),
        new(NodeOp.CallMethod, "contiguous", [P("self"), Opt("memory_format")]),
        new(NodeOp.CallMethod, "squeeze", [P("self"), Opt("dim")]),
        new(NodeOp.CallMethod, "unsqueeze", [P("self"), P("dim")]),
        new(NodeOp.CallMethod, "reshape", [P("self"), P("shape")], varargs: true),
        new(NodeOp.CallMethod, "view", [P("self"), P("shape")], varargs: true),
        new(NodeOp.CallMethod, "flatten", [P("self"), Opt("start_dim", 0L), Opt("end_dim", -1L)]),
        new(NodeOp.CallMethod, "add", [P("self"), P("other")]),
        new(NodeOp.CallMethod, "mul", [P("self"), P("other")]),
        new(NodeOp.CallMethod, "relu", [P("self")]),
        // Arithmetic, also on the Python numbers a graph computes from sizes (x.size(0) // 2, h == 224).
        new(NodeOp.CallFunction, "sub", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "div", [P("input"), P("other"), Opt("rounding_mode")]),
        new(NodeOp.CallFunction, "floordiv", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "eq", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "matmul", [P("input"), P("other")]),
        new(NodeOp.CallFunction, "bmm", [P("input"), P("mat2")]),
        new(NodeOp.CallMethod, "sub", [P("self"), P("other")]),
        new(NodeOp.CallMethod, "div", [P("self"), P("other"), Opt("rounding_mode")]),
        new(NodeOp.CallMethod, "matmul", [P("self"), P("other")]),
        // Activations and normalisations.
        new(NodeOp.CallFunction, "sigmoid", [P("input")]),
        new(NodeOp.CallFunction, "gelu", [P("input"), Opt("approximate", "none")]),
        new(NodeOp.CallFunction, "relu6", [P("input"), Opt("inplace", false)], inplaceFlag: "inplace"),
        new(NodeOp.CallFunction, "hardtanh", [P("input"), Opt("min_val", -1.0), Opt("max_val", 1.0), Opt("inplace", false)], inplaceFlag: "inplace"),
        new(NodeOp.CallFunction, "softmax", [P("input"), Opt("dim"), Opt("_stacklevel", 3L), Opt("dtype")]),
        new(NodeOp.CallFunction, "layer_norm", [P("input"), P("normalized_shape"), Opt("weight"), Opt("bias"), Opt("eps", 1e-5)]),
        new(NodeOp.CallFunction, "dropout", [P("input"), Opt("p", 0.5), Opt("training", true), Opt("inplace", false)]),
        new(NodeOp.CallFunction, "stochastic_depth", [P("input"), P("p"), P("mode"), Opt("training", true)]),
        new(NodeOp.CallMethod, "sigmoid", [P("self")]),
        new(NodeOp.CallMethod, "softmax", [P("self"), P("dim"), Opt("dtype")]),
        // Resampling: F.interpolate (nearest and bilinear are computed).
        new(NodeOp.CallFunction, "interpolate", [P("input"), Opt("size"), Opt("scale_factor"), Opt("mode", "nearest"), Opt("align_corners"), Opt("recompute_scale_factor"), Opt("antialias", false)]),
        // Pooling and reductions.
        new(NodeOp.CallFunction, "avg_pool2d", [P("input"), P("kernel_size"), Opt("stride"), Opt("padding", 0L), Opt("ceil_mode", false), Opt("count_include_pad", true), Opt("divisor_override")]),
        new(NodeOp.CallFunction, "max_pool2d", [P("input"), P("kernel_size"), Opt("stride"), Opt("padding", 0L), Opt("dilation", 1L), Opt("ceil_mode", false), Opt("return_indices", false)]),
        new(NodeOp.CallFunction, "mean", [P("input"), Opt("dim"), Opt("keepdim", false), Opt("dtype")]),
        new(NodeOp.CallMethod, "mean", [P("self"), Opt("dim"), Opt("keepdim", false), Opt("dtype")]),
        // Layout: every result is a new contiguous tensor (permute and transpose copy).
        new(NodeOp.CallFunction, "permute", [P("input"), P("dims")]),
        new(NodeOp.CallFunction, "transpose", [P("input"), P("dim0"), P("dim1")]),
        new(NodeOp.CallFunction, "chunk", [P("input"), P("chunks"), Opt("dim", 0L)]),
        new(NodeOp.CallFunction, "split", [P("tensor"), P("split_size_or_sections"), Opt("dim", 0L)]),
        new(NodeOp.CallMethod, "permute", [P("self"), P("dims")], varargs: true),
        new(NodeOp.CallMethod, "transpose", [P("self"), P("dim0"), P("dim1")]),
        new(NodeOp.CallMethod, "chunk", [P("self"), P("chunks"), Opt("dim", 0L)]),
        new(NodeOp.CallMethod, "split", [P("self"), P("split_size"), Opt("dim", 0L)]),
        new(NodeOp.CallMethod, "expand", [P("self"), P("size")], varargs: true),
        new(NodeOp.CallFunction, "swapaxes", [P("input"), P("axis0"), P("axis1")]),
        new(NodeOp.CallMethod, "swapaxes", [P("self"), P("axis0"), P("axis1")]),
        // einsum(equation, *operands), also einsum(equation, [a, b]).
        new(NodeOp.CallFunction, "einsum", [P("equation"), P("operands")], varargs: true),
        // torchvision's Swin Transformer, whose window functions it marks as leaves of the trace.
        new(NodeOp.CallFunction, "shifted_window_attention", [P("input"), P("qkv_weight"), P("proj_weight"), P("relative_position_bias"), P("window_size"), P("num_heads"),
            P("shift_size"), Opt("attention_dropout", 0.0), Opt("dropout", 0.0), Opt("qkv_bias"), Opt("proj_bias"), Opt("logit_scale")]),
        new(NodeOp.CallFunction, "relative_position_bias", [P("relative_position_bias_table"), P("relative_position_index"), P("window_size")]),
        new(NodeOp.CallFunction, "patch_merging_pad", [P("x")]),
        // Python values: indexing (lists, tuples, shapes, tensors), sizes and checks.
        new(NodeOp.CallFunction, "getitem", [P("a"), P("b")]),
        new(NodeOp.CallFunction, "getattr", [P("object"), P("name")]),
        // torch.tensor(data, dtype=...): how the exporter writes a tensor computed at trace time (fx's _tensor_constantN).
        new(NodeOp.CallFunction, "tensor", [P("data"), Opt("dtype")]),
        new(NodeOp.CallFunction, "_assert", [P("condition"), P("message")]),
        new(NodeOp.CallMethod, "size", [P("self"), Opt("dim")]),
        new(NodeOp.CallMethod, "dim", [P("self")]),
    ];

    private static readonly FrozenDictionary<string, GraphOp> Functions = All.Where(o => o.Kind == NodeOp.CallFunction).ToFrozenDictionary(o => o.Name, StringComparer.Ordinal);
    private static readonly FrozenDictionary<string, GraphOp> Methods = All.Where(o => o.Kind == NodeOp.CallMethod).ToFrozenDictionary(o => o.Name, StringComparer.Ordinal);

    /// <summary>Every operation in the table.</summary>
    public static IReadOnlyList<GraphOp> Operations => All;

    /// <summary>The operation a <c>call_function</c> or <c>call_method</c> node calls, or null when it is opaque here
    /// (or the node is of another kind).</summary>
    public static GraphOp? Of(GraphNode node)
    {
        ArgumentNullException.ThrowIfNull(node);
        return node.Op switch
        {
            NodeOp.CallFunction => Functions.GetValueOrDefault(node.Target!),
            NodeOp.CallMethod => Methods.GetValueOrDefault(node.Target!),
            _ => null,
        };
    }

    /// <summary>The function named <paramref name="name"/> in the model format, or null when it is not in the table.</summary>
    public static GraphOp? Function(string name) => Functions.GetValueOrDefault(name);

    /// <summary>Whether <paramref name="node"/> overwrites its first argument (an operation's in-place flag set to True).</summary>
    public static bool IsInplace(GraphNode node) => Of(node)?.IsInplace(node) ?? false;

    /// <summary>
    /// The table as JSON, <c>{"functions": {name: [parameters]}, "methods": {name: [parameters after self]}}</c>: what the
    /// Python exporter checks its own list against (a test fails when they differ).
    /// </summary>
    public static string SchemaJson()
    {
        static Dictionary<string, string[]> Of(FrozenDictionary<string, GraphOp> ops, int skip)
            => ops.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => kv.Value.Parameters.Skip(skip).Select(p => p.Name).ToArray());
        return JsonSerializer.Serialize(new Dictionary<string, object> { ["functions"] = Of(Functions, 0), ["methods"] = Of(Methods, 1) });
    }
}
