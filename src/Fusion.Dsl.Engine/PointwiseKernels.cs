using System.Numerics;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Element-wise functions that are not a fused group's epilogue (<see cref="Act"/> covers those and the sigmoid):
/// GELU in both of PyTorch's forms, <c>hardtanh</c>'s clamp to any range, <c>leaky_relu</c>, <c>elu</c>, and GLU's gate.
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
        => form == GeluForm.Erf ? MapRuns(x, pass, GeluErf) : Map(x, pass, GeluTanh);

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

    /// <summary>
    /// <c>GLU</c>'s forward, <c>a · σ(b)</c> with <c>a</c> and <c>b</c> the halves of the input along <c>dim</c>, in one pass:
    /// each piece of the output takes σ of its piece of <c>b</c> (the engine's one sigmoid, <see cref="Epilogue.ApplyRun"/>)
    /// and is multiplied by its piece of <c>a</c> in place, so every element rounds as the kind's definition (<c>chunk</c>,
    /// <c>sigmoid</c>, <c>mul</c>) rounds; the completeness test holds the two to each other. For each index before
    /// <c>dim</c>, the two halves and the output are each one contiguous run.
    /// </summary>
    [LayerForward("GLU")]
    public static unsafe Tensor GluForward(Evaluator ev, GLU m, Tensor x)
    {
        // The kind's shape rule refuses what PyTorch refuses (an odd or missing axis), with PyTorch's words.
        var shape = LayerKinds.Of(m)!.OutputShape(m, x.Shape.ToArray());
        var dim = Dimensions.Wrap(m.Dim, x.Rank)!.Value;
        var outer = 1;
        for (var i = 0; i < dim; i++) outer *= shape[i];
        var count = Tensor.Product(shape);
        var y = ev.Pass.Output(count);
        if (count == 0) return Tensor.Adopt(y, shape);
        var run = count / outer;
        var pieces = (run + Chunk - 1) / Chunk;
        var src = x.RawFloat32;
        Par.For(outer * pieces, ev.Pass.Threads, Chunk, i =>
        {
            int o = i / pieces, start = i % pieces * Chunk, len = Math.Min(Chunk, run - start);
            fixed (float* s = src, t = y)
            {
                float* a = s + 2L * o * run + start, dst = t + (long)o * run + start;
                Epilogue.ApplyRun(a + run, dst, len, 1f, 0f, false, Act.Sigmoid);
                TensorOps.Same(TensorOps.Binary.Mul, a, dst, dst, len);
            }
        });
        return Tensor.Adopt(y, shape);
    }

    /// <summary><c>elu(x, alpha)</c>: x where x &gt; 0, else (exp(x) − 1)·alpha, in float32.</summary>
    public static Tensor Elu(Tensor x, double alpha, Pass pass)
    {
        var a = (float)alpha;
        return Map(x, pass, v => v > 0 ? v : (MathF.Exp(v) - 1f) * a);
    }

    /// <summary>
    /// <c>x·Φ(x) = x·erfc(−x/√2)/2</c> over <paramref name="src"/> into <paramref name="dst"/> in float32 vectors, erfc by
    /// Numerical Recipes' Chebyshev fit (fractional error below 1.2e-7 everywhere; .NET has no erf): through erfc the
    /// negative tail keeps its relative accuracy (a few ulps of the exponent's argument, 4e-6 at x = −6), where PyTorch's
    /// own float32 form, <c>1 + erf</c>, cancels to nothing. Sixteen lanes at a time where 512-bit vectors run, else
    /// <see cref="Vector{T}"/>'s width. The last partial block is padded and goes through the same code, so an element's
    /// bits do not depend on where it stands. Measured (`tools/engine-bench gelu`, convnext_tiny's four sizes, 2 threads):
    /// 16-17 ns per element per CPU-second in float64 vectors, 2.3-3.3 in float32; the float64 form was a third of
    /// convnext_tiny's forward pass (`perf record`).
    /// </summary>
    private static void GeluErf(ReadOnlySpan<float> src, Span<float> dst)
    {
        var n = Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector<float>.Count;
        var k = 0;
        for (; k + n <= src.Length; k += n) GeluErfBlock(src[k..], dst[k..]);
        if (k == src.Length) return;
        Span<float> tail = stackalloc float[n];
        tail.Clear();
        src[k..].CopyTo(tail);
        GeluErfBlock(tail, tail);
        tail[..(src.Length - k)].CopyTo(dst[k..]);
    }

    /// <summary>One block of <see cref="GeluErf(ReadOnlySpan{float}, Span{float})"/> (its width's elements).</summary>
    private static void GeluErfBlock(ReadOnlySpan<float> src, Span<float> dst)
    {
        if (Vector512.IsHardwareAccelerated) GeluErf(Vector512.Create(src)).CopyTo(dst);
        else GeluErf(new Vector<float>(src)).CopyTo(dst);
    }

    private static Vector512<float> GeluErf(Vector512<float> x)
    {
        // Φ(x) = erfc(z)/2 with z = −x/√2: for x < 0 erfc(z) is the fit's r itself, so the tail keeps its relative accuracy.
        var z = x * Vector512.Create(-0.70710678f);
        var a = Vector512.Abs(z);
        var one = Vector512<float>.One;
        var t = one / (one + Vector512.Create(0.5f) * a);
        var poly = Vector512.Create(0.17087277f);
        poly = Vector512.Create(-0.82215223f) + t * poly;
        poly = Vector512.Create(1.48851587f) + t * poly;
        poly = Vector512.Create(-1.13520398f) + t * poly;
        poly = Vector512.Create(0.27886807f) + t * poly;
        poly = Vector512.Create(-0.18628806f) + t * poly;
        poly = Vector512.Create(0.09678418f) + t * poly;
        poly = Vector512.Create(0.37409196f) + t * poly;
        poly = Vector512.Create(1.00002368f) + t * poly;
        var r = t * FloatExp.Exp(-a * a - Vector512.Create(1.26551223f) + t * poly);
        var erfc = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(z, Vector512<float>.Zero), r, Vector512.Create(2f) - r);
        return x * (Vector512.Create(0.5f) * erfc);
    }

    /// <summary><see cref="GeluErf(Vector512{float})"/> at <see cref="Vector{T}"/>'s width, the same operations in the same order
    /// (written twice: .NET 10 has no public interface over both vector types, and <see cref="Vector{T}"/> stays 256-bit wide
    /// on AVX-512 machines unless the process asks otherwise).</summary>
    private static Vector<float> GeluErf(Vector<float> x)
    {
        var z = x * Vector.Create(-0.70710678f);
        var a = Vector.Abs(z);
        var one = Vector<float>.One;
        var t = one / (one + Vector.Create(0.5f) * a);
        var poly = Vector.Create(0.17087277f);
        poly = Vector.Create(-0.82215223f) + t * poly;
        poly = Vector.Create(1.48851587f) + t * poly;
        poly = Vector.Create(-1.13520398f) + t * poly;
        poly = Vector.Create(0.27886807f) + t * poly;
        poly = Vector.Create(-0.18628806f) + t * poly;
        poly = Vector.Create(0.09678418f) + t * poly;
        poly = Vector.Create(0.37409196f) + t * poly;
        poly = Vector.Create(1.00002368f) + t * poly;
        var r = t * FloatExp.Exp(-a * a - Vector.Create(1.26551223f) + t * poly);
        var erfc = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(z, Vector<float>.Zero), r, Vector.Create(2f) - r);
        return x * (Vector.Create(0.5f) * erfc);
    }

    private static float GeluTanh(float v)
    {
        var x = (double)v;
        return (float)(0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x))));
    }

    /// <summary><paramref name="run"/> over every chunk of the elements into a new tensor of the same shape.</summary>
    private static Tensor MapRuns(Tensor x, Pass pass, SpanMap run)
    {
        var src = x.RawFloat32;
        var output = pass.Output(src.Length);
        Par.For((src.Length + Chunk - 1) / Chunk, pass.Threads, Chunk, (int i) =>
        {
            var start = i * Chunk;
            var length = Math.Min(src.Length, start + Chunk) - start;
            run(src.AsSpan(start, length), output.AsSpan(start, length));
        });
        return Tensor.Adopt(output, x.Shape.ToArray());
    }

    /// <summary>An element-wise function over a run of elements.</summary>
    private delegate void SpanMap(ReadOnlySpan<float> src, Span<float> dst);

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
