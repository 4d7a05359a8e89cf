using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// A vector of float lanes of one width (<see cref="Lanes256"/>, <see cref="Lanes512"/>), so a kernel body is written
/// once and the JIT compiles it per width (a generic over a struct gets its own code, the static members inline).
/// .NET 10 keeps its own <c>ISimdVector</c> internal; this is the subset the kernels use. Only call a width's code where
/// its hardware runs (<see cref="Vector256.IsHardwareAccelerated"/>, <see cref="Vector512.IsHardwareAccelerated"/>).
/// </summary>
internal unsafe interface ILanes<TV> where TV : struct, ILanes<TV>
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Every lane zero.</summary>
    static abstract TV Zero { get; }

    /// <summary><see cref="Count"/> floats from <paramref name="p"/> (unaligned).</summary>
    static abstract TV Load(float* p);

    /// <summary><paramref name="x"/> in every lane.</summary>
    static abstract TV Broadcast(float x);

    /// <summary><c>a·b + c</c>, rounded once.</summary>
    static abstract TV FusedMultiplyAdd(TV a, TV b, TV c);

    /// <summary>A mask of the first <paramref name="n"/> lanes (1 to <see cref="Count"/>).</summary>
    static abstract TV FirstLanes(int n);

    /// <summary><c>act(x·scale + shift)</c>: <see cref="Epilogue.Apply(Vector256{float}, Vector256{float}, Vector256{float}, bool, Act)"/> at this width.</summary>
    static abstract TV Apply(TV x, TV scale, TV shift, bool hasScale, Act act);

    /// <summary>Writes <c>a₀ b₀ a₁ b₁ …</c> to <paramref name="dst"/>, at most <paramref name="room"/> of the
    /// 2·<see cref="Count"/> values (<paramref name="scratch"/> holds 2·<see cref="Count"/> floats).</summary>
    static abstract void StoreInterleaved(TV a, TV b, float* dst, int room, float* scratch);

    /// <summary>Lane-wise sum.</summary>
    static abstract TV operator +(TV a, TV b);

    /// <summary>Lane-wise difference.</summary>
    static abstract TV operator -(TV a, TV b);

    /// <summary>Stores every lane at <paramref name="p"/>.</summary>
    void Store(float* p);

    /// <summary>Stores the lanes <paramref name="mask"/> selects (from <see cref="FirstLanes"/>): a plain store when it
    /// selects them all (masked stores are slow on some cores).</summary>
    void Store(float* p, TV mask);
}
