using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Sixteen float lanes in a <see cref="Vector512{T}"/> (AVX-512).</summary>
internal readonly unsafe struct Lanes512(Vector512<float> v) : ILanes<Lanes512>
{
    /// <summary>Lane indices of the two-source permutes that interleave two vectors after their per-128-bit-lane unpacks.</summary>
    private static readonly int[] InterleaveIndex = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];

    /// <summary>The vector.</summary>
    public Vector512<float> V { get; } = v;

    public static int Count => 16;

    public static Lanes512 Zero => new(Vector512<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 Load(float* p) => new(Vector512.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 Broadcast(float x) => new(Vector512.Create(x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 FusedMultiplyAdd(Lanes512 a, Lanes512 b, Lanes512 c) => new(Vector512.FusedMultiplyAdd(a.V, b.V, c.V));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 FirstLanes(int n)
        => new(Vector512.LessThan(Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), Vector512.Create(n)).AsSingle());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 Apply(Lanes512 x, Lanes512 scale, Lanes512 shift, bool hasScale, Act act) => new(Epilogue.Apply(x.V, scale.V, shift.V, hasScale, act));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInterleaved(Lanes512 a, Lanes512 b, float* dst, int room, float* scratch)
    {
        // Unpacks work within 128-bit lanes: lo = [a0 b0 a1 b1 | a4 b4 a5 b5 | ...], hi = [a2 b2 a3 b3 | a6 b6 a7 b7 | ...].
        var lo = Avx512F.UnpackLow(a.V, b.V);
        var hi = Avx512F.UnpackHigh(a.V, b.V);
        fixed (int* index = InterleaveIndex)
        {
            var first = Avx512F.PermuteVar16x32x2(lo, Vector512.Load(index), hi);
            var second = Avx512F.PermuteVar16x32x2(lo, Vector512.Load(index + 16), hi);
            if (room >= 32)
            {
                Vector512.Store(first, dst);
                Vector512.Store(second, dst + 16);
                return;
            }
            Vector512.Store(first, scratch);
            Vector512.Store(second, scratch + 16);
        }
        for (var q = 0; q < room; q++) dst[q] = scratch[q];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 operator +(Lanes512 a, Lanes512 b) => new(a.V + b.V);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes512 operator -(Lanes512 a, Lanes512 b) => new(a.V - b.V);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p) => Vector512.Store(V, p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p, Lanes512 mask)
    {
        if (Vector512.ExtractMostSignificantBits(mask.V) == 0xFFFF) Vector512.Store(V, p);
        else Avx512F.MaskStore(p, mask.V, V);
    }
}
