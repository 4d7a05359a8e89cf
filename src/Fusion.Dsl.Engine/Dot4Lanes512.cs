using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>Sixteen int32 accumulators in a <see cref="Vector512{T}"/> (AVX-512BW).</summary>
internal readonly unsafe struct Dot4Lanes512(Vector512<int> v) : IDot4<Dot4Lanes512>
{
    /// <summary>The vector.</summary>
    public Vector512<int> V { get; } = v;

    public static int Count => 16;

    public static Dot4Lanes512 Zero => new(Vector512<int>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes512 Load(byte* p) => new(Vector512.Load(p).AsInt32());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes512 Broadcast(int w) => new(Vector512.Create(w));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes512 DotSevenBit(Dot4Lanes512 acc, Dot4Lanes512 x, Dot4Lanes512 w)
    {
        var pairs = Avx512BW.MultiplyAddAdjacent(x.V.AsByte(), w.V.AsSByte());
        return new(acc.V + Avx512BW.MultiplyAddAdjacent(pairs, Vector512.Create((short)1)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Dot4Lanes512 DotExact(Dot4Lanes512 acc, Dot4Lanes512 x, Dot4Lanes512 w)
    {
        var x16 = x.V.AsInt16();
        var w16 = w.V.AsInt16();
        var xEven = x16 & Vector512.Create((short)0xFF);
        var xOdd = Vector512.ShiftRightLogical(x16, 8);
        var wEven = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(w16, 8), 8);
        var wOdd = Vector512.ShiftRightArithmetic(w16, 8);
        return new(acc.V + Avx512BW.MultiplyAddAdjacent(xEven, wEven) + Avx512BW.MultiplyAddAdjacent(xOdd, wOdd));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store(int* p) => V.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Subtract(int* src, int shift, int* dst) => (Vector512.Load(src) - Vector512.Create(shift)).Store(dst);
}
