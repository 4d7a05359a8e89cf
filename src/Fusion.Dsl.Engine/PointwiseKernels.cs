using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Element-wise functions that are not a fused group's epilogue (<see cref="Act"/> covers those and the sigmoid):
/// GELU in both of PyTorch's forms, <c>hardtanh</c>'s clamp to any range, <c>leaky_relu</c> and <c>elu</c>.
/// </summary>
internal static class PointwiseKernels
{
    /// <summary>Elements per work item (as <see cref="TensorOps"/>'s element-wise operations).</summary>
    private const int Chunk = 1 << 14;

    /// <summary>PyTorch's two GELU forms, by their <c>approximate</c> argument.</summary>
    public enum GeluForm
    {
        /// <summary><c>approximate='none'</c>: <c>x·Φ(x)</c> through the error function.</summary>
        Erf,
        /// <summary><c>approximate='tanh'</c>: <c>x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))</c>.</summary>
        Tanh,
    }

    /// <summary><c>approximate='none'</c> or <c>'tanh'</c> as a <see cref="GeluForm"/>.</summary>
    /// <exception cref="EngineInputException">Any other string.</exception>
    public static GeluForm GeluOf(string? approximate) => approximate switch
    {
        "none" => GeluForm.Erf,
        "tanh" => GeluForm.Tanh,
        _ => throw new EngineInputException($"gelu: approximate must be 'none' or 'tanh', got '{approximate}'"),
    };

    /// <summary><c>gelu(x) = x·Φ(x)</c> exactly (through erf) or with PyTorch's tanh approximation.</summary>
    public static Tensor Gelu(Tensor x, GeluForm form, Pass pass)
        => form == GeluForm.Erf ? Map(x, pass, GeluErf) : Map(x, pass, GeluTanh);

    /// <summary><c>tanh(x)</c>, through <see cref="MathF.Tanh"/>.</summary>
    public static Tensor Tanh(Tensor x, Pass pass) => Map(x, pass, MathF.Tanh);

    /// <summary><c>hardtanh(x, min_val, max_val)</c>: x clamped to the range (NaN stays NaN, as in PyTorch's clamp).</summary>
    public static Tensor Hardtanh(Tensor x, double min, double max, Pass pass)
    {
        if (min > max) throw new EngineInputException($"hardtanh: min_val ({min}) must not exceed max_val ({max})");
        float lo = (float)min, hi = (float)max;
        return Map(x, pass, v => float.IsNaN(v) ? v : Math.Clamp(v, lo, hi));
    }

    /// <summary><c>leaky_relu(x, negative_slope)</c>: x where x &gt; 0, else x·slope (the slope in float32, as PyTorch's kernel takes it).</summary>
    public static Tensor LeakyRelu(Tensor x, double negativeSlope, Pass pass)
    {
        var slope = (float)negativeSlope;
        return Map(x, pass, v => v > 0 ? v : v * slope);
    }

    /// <summary><c>prelu(x, weight)</c>: x where x &gt; 0, else x·weight[c] in float32, c the channel (dimension 1) when
    /// the weight has more than one element, else the one weight for every element.</summary>
    /// <exception cref="EngineInputException">The weight has more than one element and the input no dimension 1 of that
    /// size (PyTorch's "Mismatch of parameter numbers and input channel size").</exception>
    public static Tensor PRelu(Tensor x, Tensor weight, Pass pass)
    {
        var w = weight.Float32;
        if (w.Length == 1) return LeakyRelu(x, w[0], pass);
        if (x.Rank < 2 || x.Shape[1] != w.Length)
            throw new EngineInputException($"PReLU has {w.Length} parameters, one per channel, but its input {Tensor.ShapeString(x.Shape)} has {(x.Rank < 2 ? "no channel dimension" : $"{x.Shape[1]} channels")} (PyTorch: \"Mismatch of parameter numbers and input channel size\")");
        var src = x.RawFloat32;
        var output = pass.Output(src.Length);
        int inner = 1;
        for (int d = 2; d < x.Rank; d++) inner *= x.Shape[d];
        var slopes = w.ToArray();
        Par.For((src.Length + Chunk - 1) / Chunk, pass.Threads, Chunk, (int i) =>
        {
            var end = Math.Min(src.Length, (i + 1) * Chunk);
            for (var k = i * Chunk; k < end; k++) output[k] = src[k] > 0 ? src[k] : src[k] * slopes[k / inner % slopes.Length];
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary><c>elu(x, alpha)</c>: x where x &gt; 0, else (exp(x) − 1)·alpha, in float32.</summary>
    public static Tensor Elu(Tensor x, double alpha, Pass pass)
    {
        var a = (float)alpha;
        return Map(x, pass, v => v > 0 ? v : (MathF.Exp(v) - 1f) * a);
    }

    private static float GeluErf(float v)
    {
        // x·Φ(x) = x·(1 − erfc(x/√2)/2): through erfc the negative tail keeps its relative accuracy.
        var x = (double)v;
        return (float)(x * (1 - 0.5 * Erfc(x / Math.Sqrt(2))));
    }

    private static float GeluTanh(float v)
    {
        var x = (double)v;
        return (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));
    }

    /// <summary>
    /// The complementary error function with fractional error below 1.2e-7 everywhere (Numerical Recipes' Chebyshev
    /// fit): .NET has no erf, and float32 results need no more.
    /// </summary>
    public static double Erfc(double z)
    {
        if (double.IsNaN(z)) return z;
        var a = Math.Abs(z);
        var t = 1 / (1 + 0.5 * a);
        var r = t * Math.Exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
        return z >= 0 ? r : 2 - r;
    }

    /// <summary><paramref name="f"/> of every element into a new tensor of the same shape.</summary>
    private static Tensor Map(Tensor x, Pass pass, Func<float, float> f)
    {
        var src = x.RawFloat32;
        var output = pass.Output(src.Length);
        Par.For((src.Length + Chunk - 1) / Chunk, pass.Threads, Chunk, (int i) =>
        {
            var end = Math.Min(src.Length, (i + 1) * Chunk);
            for (var k = i * Chunk; k < end; k++) output[k] = f(src[k]);
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }
}
