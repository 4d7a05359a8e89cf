using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Eight int32 accumulators in a <see cref="Vector256{T}"/> (AVX2).</summary>
internal readonly unsafe struct Dot4Lanes256(Vector256<int> v) : IDot4<Dot4Lanes256>
{
    /// <summary>The vector.</summary>
    public Vector256<int> V { get; } = v;

    public static int Count => 8;

    public static Dot4Lanes256 Zero => new(Vector256<int>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes256 Load(byte* p) => new(Vector256.Load(p).AsInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes256 Broadcast(int w) => new(Vector256.Create(w));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes256 DotSevenBit(Dot4Lanes256 acc, Dot4Lanes256 x, Dot4Lanes256 w)
    {
        var pairs = Avx2.MultiplyAddAdjacent(x.V.AsByte(), w.V.AsSByte());
        return new(acc.V + Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes256 DotExact(Dot4Lanes256 acc, Dot4Lanes256 x, Dot4Lanes256 w)
    {
        var x16 = x.V.AsInt16();
        var w16 = w.V.AsInt16();
        var xEven = x16 & Vector256.Create((short)0xFF);
        var xOdd = Vector256.ShiftRightLogical(x16, 8);
        var wEven = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(w16, 8), 8);
        var wOdd = Vector256.ShiftRightArithmetic(w16, 8);
        return new(acc.V + Avx2.MultiplyAddAdjacent(xEven, wEven) + Avx2.MultiplyAddAdjacent(xOdd, wOdd));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(int* p) => V.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Subtract(int* src, int shift, int* dst) => (Vector256.Load(src) - Vector256.Create(shift)).Store(dst);
}
