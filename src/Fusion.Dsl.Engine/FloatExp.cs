using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// <c>e^x</c> in float32 vectors for the activations (sigmoid, SiLU, GELU): Cephes' <c>expf</c> scheme, <c>x = k·ln 2 + r</c>
/// with ln 2 split in two so that <c>r</c> is exact, a degree-6 polynomial for <c>e^r</c>, and <c>2^k</c> applied as two
/// exact powers of two so that results down to the denormals and up to overflow come out right. Relative error below 1e-7
/// (about one ulp); +∞ above 88.72, 0 below −103.98, NaN for NaN. Written here rather than taken from
/// <c>Vector512.Exp</c> because a measurement said so: .NET 10's float exponential widens to float64 and was 8x slower per
/// element (0.48 against 3.9 ns, one core, an F# loop over 2^20 values). The same operations in the same order at every
/// width, so an element's bits do not depend on the vector that carries it (written for 256 and 512 bits: .NET 10's
/// <c>ISimdVector</c> is internal, and two 256-bit halves would halve the 512-bit rate).
/// </summary>
internal static class FloatExp
{
    private const float Log2E = 1.44269504088896341f;
    // ln 2 = C1 + C2, C1 with few enough bits that k·C1 is exact for every k reached.
    private const float C1 = 0.693359375f;
    private const float C2 = -2.12194440e-4f;
    private const float P0 = 1.9875691500E-4f, P1 = 1.3981999507E-3f, P2 = 8.3334519073E-3f, P3 = 4.1665795894E-2f, P4 = 1.6666665459E-1f, P5 = 5.0000001201E-1f;
    private const float Hi = 88.72284f;   // e^x overflows float32 above this
    private const float Lo = -103.97208f; // and rounds to 0 below this

    /// <summary><c>e^x</c> on every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var c = Vector512.Min(Vector512.Max(x, Vector512.Create(Lo)), Vector512.Create(Hi));
        var k = Vector512.Round(c * Vector512.Create(Log2E));
        var r = c - k * Vector512.Create(C1) - k * Vector512.Create(C2);
        var p = Vector512.Create(P0);
        p = p * r + Vector512.Create(P1);
        p = p * r + Vector512.Create(P2);
        p = p * r + Vector512.Create(P3);
        p = p * r + Vector512.Create(P4);
        p = p * r + Vector512.Create(P5);
        var y = p * r * r + r + Vector512<float>.One;
        var ki = Vector512.ConvertToInt32(k);
        var half = Vector512.ShiftRightArithmetic(ki, 1);
        y = y * Vector512.ShiftLeft(half + Vector512.Create(127), 23).AsSingle() * Vector512.ShiftLeft(ki - half + Vector512.Create(127), 23).AsSingle();
        y = Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(Hi)), Vector512.Create(float.PositiveInfinity), y);
        y = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(Lo)), Vector512<float>.Zero, y);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), y, x);
    }

    /// <summary><see cref="Exp(Vector512{float})"/> on 256-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var c = Vector256.Min(Vector256.Max(x, Vector256.Create(Lo)), Vector256.Create(Hi));
        var k = Vector256.Round(c * Vector256.Create(Log2E));
        var r = c - k * Vector256.Create(C1) - k * Vector256.Create(C2);
        var p = Vector256.Create(P0);
        p = p * r + Vector256.Create(P1);
        p = p * r + Vector256.Create(P2);
        p = p * r + Vector256.Create(P3);
        p = p * r + Vector256.Create(P4);
        p = p * r + Vector256.Create(P5);
        var y = p * r * r + r + Vector256<float>.One;
        var ki = Vector256.ConvertToInt32(k);
        var half = Vector256.ShiftRightArithmetic(ki, 1);
        y = y * Vector256.ShiftLeft(half + Vector256.Create(127), 23).AsSingle() * Vector256.ShiftLeft(ki - half + Vector256.Create(127), 23).AsSingle();
        y = Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(Hi)), Vector256.Create(float.PositiveInfinity), y);
        y = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(Lo)), Vector256<float>.Zero, y);
        return Vector256.ConditionalSelect(Vector256.Equals(x, x), y, x);
    }

    /// <summary><see cref="Exp(Vector512{float})"/> on 128-bit vectors (and, one lane of it, on a scalar): the 256-bit form's
    /// lower half, lane for lane the same operations.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x) => Exp(x.ToVector256()).GetLower();

    /// <summary><see cref="Exp(Vector512{float})"/> at <see cref="Vector{T}"/>'s width (128, 256 or 512 bits).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Exp(Vector<float> x) => Vector<float>.Count switch
    {
        16 => Exp(x.AsVector512()).AsVector(),
        8 => Exp(x.AsVector256()).AsVector(),
        _ => Exp(x.AsVector128()).AsVector(),
    };

    /// <summary><see cref="Exp(Vector128{float})"/> on one lane: the same bits as every vector width gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Exp(float x) => Exp(Vector128.CreateScalar(x)).ToScalar();
}
