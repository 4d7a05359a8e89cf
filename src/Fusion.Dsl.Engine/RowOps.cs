using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Row primitives shared by kernels: the split of strided data into stride phases, and the in-register transpose
/// with which the weight packings turn rows into columns.</summary>
internal static unsafe class RowOps
{
    /// <summary>
    /// Splits <c>s·len</c> consecutive values into <paramref name="s"/> phase rows of <paramref name="len"/>:
    /// element <c>q·s + r</c> goes to <c>dst[r·phaseStride + q]</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Deinterleave(float* src, float* dst, int len, int s, long phaseStride)
    {
        var q = 0;
        if (s == 2 && Avx2.IsSupported)
        {
            var odd = dst + phaseStride;
            for (; q <= len - 8; q += 8)
            {
                var a = Vector256.Load(src + 2 * q);
                var b = Vector256.Load(src + 2 * q + 8);
                // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs reordered to [a0 a2 a4 a6 b0 b2 b4 b6].
                var even = Avx.Shuffle(a, b, 0b10_00_10_00);
                var odds = Avx.Shuffle(a, b, 0b11_01_11_01);
                Vector256.Store(Avx2.Permute4x64(even.AsDouble(), 0b11_01_10_00).AsSingle(), dst + q);
                Vector256.Store(Avx2.Permute4x64(odds.AsDouble(), 0b11_01_10_00).AsSingle(), odd + q);
            }
        }
        for (; q < len; q++)
            for (var r = 0; r < s; r++)
                dst[r * phaseStride + q] = src[q * s + r];
    }

    /// <summary>
    /// The 4×4 transposes of both 128-bit halves of four rows: <paramref name="c04"/> holds element 0 of rows 0-3 in its
    /// low half and element 4 in its high half, <paramref name="c15"/> elements 1 and 5, and so on.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose4x4Halves(Vector256<float> r0, Vector256<float> r1, Vector256<float> r2, Vector256<float> r3,
        out Vector256<float> c04, out Vector256<float> c15, out Vector256<float> c26, out Vector256<float> c37)
    {
        Vector256<float> lo01 = Avx.UnpackLow(r0, r1), hi01 = Avx.UnpackHigh(r0, r1);
        Vector256<float> lo23 = Avx.UnpackLow(r2, r3), hi23 = Avx.UnpackHigh(r2, r3);
        c04 = Avx.Shuffle(lo01, lo23, 0b01_00_01_00);
        c15 = Avx.Shuffle(lo01, lo23, 0b11_10_11_10);
        c26 = Avx.Shuffle(hi01, hi23, 0b01_00_01_00);
        c37 = Avx.Shuffle(hi01, hi23, 0b11_10_11_10);
    }
}
