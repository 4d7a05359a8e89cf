using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The AVX-512 micro-kernel of <see cref="Gemm"/>: a 12×32 tile (two <see cref="Gemm.MR"/>-row A panels by two
/// <see cref="Gemm.NR"/>-column B panels) in 24 of the 32 zmm registers, over the packed layouts the 256-bit kernels use,
/// so nothing is packed differently on either path. A packed B row of one panel is exactly one zmm vector, and each depth
/// step costs 2 vector loads and 12 broadcasts for 24 FMAs (the 6×16 AVX2 kernel needs 8 for 12), which is what lets
/// a core with two full-width 512-bit FMA pipes (Zen 5) run at twice the AVX2 rate. Every output element is the same
/// chain of FMAs over the depth as in <see cref="Gemm"/>'s 6×16 kernel, so both paths give the same bits.
/// </summary>
internal static unsafe class GemmKernel512
{
    // Gemm calls it where Vector512.IsHardwareAccelerated (fixed at start-up by the hardware and DOTNET_EnableAVX512).

    /// <summary>
    /// <c>A(12×k)·B(k×32)</c> for the A panels <paramref name="a0"/> and <paramref name="a1"/> (rows 0-5 and 6-11) and the
    /// B panels <paramref name="b0"/> and <paramref name="b1"/> (columns 0-15 and 16-31) into the four 6×16 tiles
    /// <c>t00, t01</c> (rows 0-5) and <c>t10, t11</c> (rows 6-11), starting from their contents when
    /// <paramref name="accumulate"/> is set.
    /// <para>
    /// With a non-null <paramref name="d0"/> the tiles are not written: scale, shift and the activation are applied in
    /// registers and the rows go straight into C, row r of the first column panel at <c>d0 + r·rowStride</c>, of the
    /// second at <c>d1 + r·rowStride</c>, with row r's scale and shift at <c>scale[r]</c> and <c>shift[r]</c> (null:
    /// 1 and 0), the same bits as the tiles through <see cref="Gemm"/>'s store. For shallow products (mobilenet's 1x1
    /// convolutions have depths of 16 to 160) writing tiles and reading them back costs a fifth of the multiply-adds.
    /// The activation must not call out (<see cref="Epilogue.CallsOut"/>): nothing after the loop may call a method, or
    /// the JIT keeps the accumulators in memory (the reason given on the 256-bit kernel). With a non-null
    /// <paramref name="r0"/> (and <paramref name="r1"/>), the residual rows laid out as <paramref name="d0"/> and
    /// <paramref name="d1"/>, each row's value <c>x·scale + shift</c> gets its residual added before the activation, the
    /// order of <see cref="Epilogue.Apply(float, float, float, bool, float, Act)"/>.
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Kernel(float* a0, float* a1, float* b0, float* b1, int k,
                              float* t00, float* t01, float* t10, float* t11, bool accumulate,
                              float* d0 = null, float* d1 = null, long rowStride = 0, float* scale = null, float* shift = null, Act act = Act.None,
                              float* r0 = null, float* r1 = null)
    {
        const int nr = Gemm.NR, mr = Gemm.MR;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, cA0 = default, cA1 = default, cB0 = default, cB1 = default;
        if (accumulate)
        {
            c00 = Vector512.Load(t00); c01 = Vector512.Load(t01);
            c10 = Vector512.Load(t00 + nr); c11 = Vector512.Load(t01 + nr);
            c20 = Vector512.Load(t00 + 2 * nr); c21 = Vector512.Load(t01 + 2 * nr);
            c30 = Vector512.Load(t00 + 3 * nr); c31 = Vector512.Load(t01 + 3 * nr);
            c40 = Vector512.Load(t00 + 4 * nr); c41 = Vector512.Load(t01 + 4 * nr);
            c50 = Vector512.Load(t00 + 5 * nr); c51 = Vector512.Load(t01 + 5 * nr);
            c60 = Vector512.Load(t10); c61 = Vector512.Load(t11);
            c70 = Vector512.Load(t10 + nr); c71 = Vector512.Load(t11 + nr);
            c80 = Vector512.Load(t10 + 2 * nr); c81 = Vector512.Load(t11 + 2 * nr);
            c90 = Vector512.Load(t10 + 3 * nr); c91 = Vector512.Load(t11 + 3 * nr);
            cA0 = Vector512.Load(t10 + 4 * nr); cA1 = Vector512.Load(t11 + 4 * nr);
            cB0 = Vector512.Load(t10 + 5 * nr); cB1 = Vector512.Load(t11 + 5 * nr);
        }
        for (var p = 0; p < k; p++)
        {
            var x = Vector512.Load(b0);
            var y = Vector512.Load(b1);
            var a = Vector512.Create(a0[0]);
            c00 = Vector512.FusedMultiplyAdd(a, x, c00); c01 = Vector512.FusedMultiplyAdd(a, y, c01);
            a = Vector512.Create(a0[1]);
            c10 = Vector512.FusedMultiplyAdd(a, x, c10); c11 = Vector512.FusedMultiplyAdd(a, y, c11);
            a = Vector512.Create(a0[2]);
            c20 = Vector512.FusedMultiplyAdd(a, x, c20); c21 = Vector512.FusedMultiplyAdd(a, y, c21);
            a = Vector512.Create(a0[3]);
            c30 = Vector512.FusedMultiplyAdd(a, x, c30); c31 = Vector512.FusedMultiplyAdd(a, y, c31);
            a = Vector512.Create(a0[4]);
            c40 = Vector512.FusedMultiplyAdd(a, x, c40); c41 = Vector512.FusedMultiplyAdd(a, y, c41);
            a = Vector512.Create(a0[5]);
            c50 = Vector512.FusedMultiplyAdd(a, x, c50); c51 = Vector512.FusedMultiplyAdd(a, y, c51);
            a = Vector512.Create(a1[0]);
            c60 = Vector512.FusedMultiplyAdd(a, x, c60); c61 = Vector512.FusedMultiplyAdd(a, y, c61);
            a = Vector512.Create(a1[1]);
            c70 = Vector512.FusedMultiplyAdd(a, x, c70); c71 = Vector512.FusedMultiplyAdd(a, y, c71);
            a = Vector512.Create(a1[2]);
            c80 = Vector512.FusedMultiplyAdd(a, x, c80); c81 = Vector512.FusedMultiplyAdd(a, y, c81);
            a = Vector512.Create(a1[3]);
            c90 = Vector512.FusedMultiplyAdd(a, x, c90); c91 = Vector512.FusedMultiplyAdd(a, y, c91);
            a = Vector512.Create(a1[4]);
            cA0 = Vector512.FusedMultiplyAdd(a, x, cA0); cA1 = Vector512.FusedMultiplyAdd(a, y, cA1);
            a = Vector512.Create(a1[5]);
            cB0 = Vector512.FusedMultiplyAdd(a, x, cB0); cB1 = Vector512.FusedMultiplyAdd(a, y, cB1);
            a0 += mr;
            a1 += mr;
            b0 += nr;
            b1 += nr;
        }
        if (d0 != null)
        {
            Row(c00, c01, 0); Row(c10, c11, 1); Row(c20, c21, 2); Row(c30, c31, 3); Row(c40, c41, 4); Row(c50, c51, 5);
            Row(c60, c61, 6); Row(c70, c71, 7); Row(c80, c81, 8); Row(c90, c91, 9); Row(cA0, cA1, 10); Row(cB0, cB1, 11);
            return;
        }
        Vector512.Store(c00, t00); Vector512.Store(c01, t01);
        Vector512.Store(c10, t00 + nr); Vector512.Store(c11, t01 + nr);
        Vector512.Store(c20, t00 + 2 * nr); Vector512.Store(c21, t01 + 2 * nr);
        Vector512.Store(c30, t00 + 3 * nr); Vector512.Store(c31, t01 + 3 * nr);
        Vector512.Store(c40, t00 + 4 * nr); Vector512.Store(c41, t01 + 4 * nr);
        Vector512.Store(c50, t00 + 5 * nr); Vector512.Store(c51, t01 + 5 * nr);
        Vector512.Store(c60, t10); Vector512.Store(c61, t11);
        Vector512.Store(c70, t10 + nr); Vector512.Store(c71, t11 + nr);
        Vector512.Store(c80, t10 + 2 * nr); Vector512.Store(c81, t11 + 2 * nr);
        Vector512.Store(c90, t10 + 3 * nr); Vector512.Store(c91, t11 + 3 * nr);
        Vector512.Store(cA0, t10 + 4 * nr); Vector512.Store(cA1, t11 + 4 * nr);
        Vector512.Store(cB0, t10 + 5 * nr); Vector512.Store(cB1, t11 + 5 * nr);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        void Row(Vector512<float> lo, Vector512<float> hi, int r)
        {
            var vs = Vector512.Create(scale == null ? 1f : scale[r]);
            var vb = Vector512.Create(shift == null ? 0f : shift[r]);
            lo = scale == null ? lo + vb : Vector512.FusedMultiplyAdd(lo, vs, vb);
            hi = scale == null ? hi + vb : Vector512.FusedMultiplyAdd(hi, vs, vb);
            if (r0 != null)
            {
                lo += Vector512.Load(r0 + r * rowStride);
                hi += Vector512.Load(r1 + r * rowStride);
            }
            Vector512.Store(Epilogue.ActivatePiecewise(lo, act), d0 + r * rowStride);
            Vector512.Store(Epilogue.ActivatePiecewise(hi, act), d1 + r * rowStride);
        }
    }
}
