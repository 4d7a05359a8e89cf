using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// <c>Linear</c> over the last dimension: <c>y[r, o] = epilogue_o(Σ_k x[r, k]·W[o, k])</c>. Few rows run as
/// vectorised dot products (a GEMV, the batch-1 classifier case); more rows run on the GEMM with the weight as the
/// packed A operand (packed once, kept by the session) and the input read transposed, so the per-output epilogue is a per-row one.
/// </summary>
internal static unsafe class LinearKernels
{
    private const int PackLinear = 2;

    /// <summary>Rows below which dot products beat packing a GEMM panel.</summary>
    private const int GemvRows = 4;

    /// <summary>The layer on an input whose last dimension is <c>in_features</c> (checked by the caller).</summary>
    public static Tensor Forward(Linear linear, Tensor x, Epilogue ep, Pass pass)
    {
        var threads = pass.Threads;
        var inF = linear.InFeatures;
        var outF = linear.OutFeatures;
        var rows = ShapeRows(x.Shape);
        int[] shape = [.. x.Shape[..^1], outF];
        var output = pass.Output(checked(rows * outF));
        var weight = linear.Weight;
        if (rows < GemvRows || inF == 0)
        {
            var xs = x.RawFloat32;
            var w = weight.RawFloat32;
            Par.For(outF, threads, (long)rows * inF, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (int o) =>
            {
                var (scale, shift) = ep.At(o);
                fixed (float* wp = w, xp = xs, yp = output)
                    for (var r = 0; r < rows; r++)
                        yp[(long)r * outF + o] = Epilogue.Apply(Dot(wp + (long)o * inF, xp + (long)r * inF, inF), scale, shift, ep.Scale is not null, ep.Activation);
            });
        }
        else
        {
            var packedA = pass.Pack(weight, (PackLinear, 1, 0), () => Gemm.PackWeight(weight, 1, outF, inF, 0, inF, 1, threads));
            var koff = new int[inF];
            for (var k = 0; k < inF; k++) koff[k] = k;
            var colBase = new int[rows];
            for (var r = 0; r < rows; r++) colBase[r] = checked(r * inF);
            var b = new BSource(x.RawFloat32, 0, 0, 0, koff, colBase, rows);
            var c = new CTarget(output, 0, 0, 0, 1, outF, null);
            Gemm.Run(packedA, outF, inF, b, c, ep, 1, 1, threads);
        }
        return Tensor.Adopt(output, shape);
    }

    private static int ShapeRows(ReadOnlySpan<int> shape)
    {
        var r = 1;
        for (var i = 0; i < shape.Length - 1; i++) r *= shape[i];
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot(float* a, float* b, int n)
    {
        var i = 0;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        for (; i <= n - 16; i += 16)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
        }
        var sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        return sum;
    }
}
