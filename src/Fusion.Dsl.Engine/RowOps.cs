using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Row primitives shared by the kernels that read strided data through stride phases.</summary>
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
}
