using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// The element-wise arithmetic of <see cref="QFunctional.Add"/> and <see cref="QFunctional.AddRelu"/>:
/// <c>q = clamp(zp + round_half_even(max?((a − a_zp)·a_scale + (b − b_zp)·b_scale, 0)·(1/scale)))</c>, every step in
/// float32 in that order and without a fused multiply-add, as PyTorch 1.13's scalar <c>quantize_val</c> path computes it.
/// Sixteen elements at a time in 256-bit vectors where they run, the same operations lane by lane, so the bits equal the
/// scalar definition's.
/// </summary>
internal readonly struct AddKernel(float scaleA, float scaleB, float inverse, int zeroA, int zeroB, long zeroPoint, int qmin, int qmax, bool relu, bool signed)
{
    /// <summary>Elements <paramref name="start"/> .. <paramref name="start"/>+<paramref name="count"/> of the stored
    /// bytes <paramref name="a"/> and <paramref name="b"/>, written to <paramref name="y"/>.</summary>
    public void Run(byte[] a, byte[] b, byte[] y, int start, int count)
    {
        if (start < 0 || count < 0 || (long)start + count > Math.Min(y.Length, Math.Min(a.Length, b.Length)))
            throw new ArgumentException($"elements {start}..{(long)start + count} are outside the {y.Length} given");
        var i = start;
        var end = start + count;
        if (Vector256.IsHardwareAccelerated)
        {
            var sa = Vector256.Create(scaleA);
            var sb = Vector256.Create(scaleB);
            var inv = Vector256.Create(inverse);
            var za = Vector256.Create(zeroA);
            var zb = Vector256.Create(zeroB);
            var zp = Vector256.Create((float)zeroPoint);
            var lo = Vector256.Create((float)qmin);
            var hi = Vector256.Create((float)qmax);
            for (; i + 16 <= end; i += 16)
            {
                var (a0, a1) = Widen(Vector128.Create(a, i));
                var (b0, b1) = Widen(Vector128.Create(b, i));
                var y0 = One(a0, b0, sa, sb, inv, za, zb, zp, lo, hi);
                var y1 = One(a1, b1, sa, sb, inv, za, zb, zp, lo, hi);
                // Every lane is within the dtype's range after the clamp, so truncating narrows keep the values.
                var shorts = Vector256.Narrow(y0, y1);
                Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().CopyTo(y, i);
            }
        }
        for (; i < end; i++)
        {
            int va = signed ? (sbyte)a[i] : a[i], vb = signed ? (sbyte)b[i] : b[i];
            float sum = (float)(va - zeroA) * scaleA + (float)(vb - zeroB) * scaleB;
            if (relu) sum = MathF.Max(sum, 0f);
            y[i] = unchecked((byte)QuantizedTensor.QuantizeValue(sum, inverse, zeroPoint, qmin, qmax));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private (Vector256<int>, Vector256<int>) Widen(Vector128<byte> v)
    {
        if (signed)
        {
            var s = v.AsSByte();
            var shorts = Vector256.Create(Vector128.WidenLower(s), Vector128.WidenUpper(s));
            return (Vector256.WidenLower(shorts), Vector256.WidenUpper(shorts));
        }
        var u = Vector256.Create(Vector128.WidenLower(v), Vector128.WidenUpper(v));
        return (Vector256.WidenLower(u).AsInt32(), Vector256.WidenUpper(u).AsInt32());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector256<int> One(Vector256<int> a, Vector256<int> b, Vector256<float> sa, Vector256<float> sb, Vector256<float> inv,
        Vector256<int> za, Vector256<int> zb, Vector256<float> zp, Vector256<float> lo, Vector256<float> hi)
    {
        var sum = Vector256.ConvertToSingle(a - za) * sa + Vector256.ConvertToSingle(b - zb) * sb;
        if (relu) sum = Vector256.Max(sum, Vector256<float>.Zero);
        // zp + round(x·(1/scale)), then the clamp quantize_val applies after its int64 cast: the sum is a whole number
        // (or beyond every 8-bit bound), so clamping first and truncating gives the same value; a sum beyond int64,
        // which x86's cast turns into int64's minimum, gives the dtype's minimum as the scalar path does.
        var q = Vector256.Round(sum * inv) + zp;
        var inRange = Vector256.GreaterThanOrEqual(q, Vector256.Create(-9.223372E18f)) & Vector256.LessThan(q, Vector256.Create(9.223372E18f));
        return Vector256.ConvertToInt32(Vector256.ConditionalSelect(inRange, Vector256.Min(Vector256.Max(q, lo), hi), lo));
    }
}
