using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Eight float lanes in a <see cref="Vector256{T}"/> (AVX and AVX2).</summary>
internal readonly unsafe struct Lanes256(Vector256<float> v) : ILanes<Lanes256>
{
    /// <summary>The vector.</summary>
    public Vector256<float> V { get; } = v;

    public static int Count => 8;

    public static Lanes256 Zero => new(Vector256<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 Load(float* p) => new(Vector256.Load(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 Broadcast(float x) => new(Vector256.Create(x));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 FusedMultiplyAdd(Lanes256 a, Lanes256 b, Lanes256 c) => new(Vector256.FusedMultiplyAdd(a.V, b.V, c.V));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 FirstLanes(int n) => new(Epilogue.TailMask(n));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 Apply(Lanes256 x, Lanes256 scale, Lanes256 shift, bool hasScale, Act act) => new(Epilogue.Apply(x.V, scale.V, shift.V, hasScale, act));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInterleaved(Lanes256 a, Lanes256 b, float* dst, int room, float* scratch)
    {
        var lo = Avx.UnpackLow(a.V, b.V);
        var hi = Avx.UnpackHigh(a.V, b.V);
        var first = Avx2.Permute2x128(lo, hi, 0x20);
        var second = Avx2.Permute2x128(lo, hi, 0x31);
        if (room >= 16)
        {
            Vector256.Store(first, dst);
            Vector256.Store(second, dst + 8);
            return;
        }
        Vector256.Store(first, scratch);
        Vector256.Store(second, scratch + 8);
        for (var q = 0; q < room; q++) dst[q] = scratch[q];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 operator +(Lanes256 a, Lanes256 b) => new(a.V + b.V);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Lanes256 operator -(Lanes256 a, Lanes256 b) => new(a.V - b.V);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p) => Vector256.Store(V, p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(float* p, Lanes256 mask)
    {
        if (Avx.MoveMask(mask.V) == 0xFF) Vector256.Store(V, p);
        else Avx.MaskStore(p, mask.V, V);
    }
}
