using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// A vector of int32 accumulators of one width (<see cref="Dot4Lanes256"/>, <see cref="Dot4Lanes512"/>) and the
/// u8×s8 four-term dot product the int8 GEMM accumulates into it, so <see cref="Int8Gemm"/>'s kernel is written once.
/// Each int32 lane takes four unsigned bytes of activations and four signed bytes of weights. Only call a width's code
/// where its hardware runs (<see cref="Vector256.IsHardwareAccelerated"/> with AVX2, <see cref="Vector512.IsHardwareAccelerated"/>
/// with AVX-512BW).
/// </summary>
internal unsafe interface IDot4<TV> where TV : struct, IDot4<TV>
{
    /// <summary>Int32 lanes per vector: the columns one vector covers.</summary>
    static abstract int Count { get; }

    /// <summary>Every lane zero.</summary>
    static abstract TV Zero { get; }

    /// <summary>4·<see cref="Count"/> bytes from <paramref name="p"/>: four activations for each lane.</summary>
    static abstract TV Load(byte* p);

    /// <summary>Four signed weight bytes (packed little-endian in <paramref name="w"/>) in every lane.</summary>
    static abstract TV Broadcast(int w);

    /// <summary><c>acc + Σ x_b·w_b</c> over each lane's four bytes through <c>vpmaddubsw</c> and <c>vpmaddwd</c>: the
    /// pair sums saturate at int16, so it is exact only when every activation is at most 127 (a 7-bit range, as PyTorch's
    /// <c>x86</c> and <c>fbgemm</c> qconfigs quantize activations for this reason).</summary>
    static abstract TV DotSevenBit(TV acc, TV x, TV w);

    /// <summary><c>acc + Σ x_b·w_b</c> exactly for any unsigned activations: even and odd bytes widened to int16
    /// separately, then two <c>vpmaddwd</c>.</summary>
    static abstract TV DotExact(TV acc, TV x, TV w);

    /// <summary>Stores the lanes at <paramref name="p"/>.</summary>
    void Store(int* p);

    /// <summary>Stores <see cref="Count"/> int32s from <paramref name="src"/>, each less <paramref name="shift"/>, to <paramref name="dst"/>.</summary>
    static abstract void Subtract(int* src, int shift, int* dst);
}
