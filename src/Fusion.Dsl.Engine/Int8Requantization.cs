using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The requantization of an int8 layer's int32 sums to unsigned 8-bit outputs, per output channel <c>c</c>:
/// <c>y = saturate₀²⁵⁵(round_half_even(max?((acc + bias[c])·multiplier[c], 0) + zeroPoint))</c>, every step in float32.
/// This is the form oneDNN computes for PyTorch's quantized Conv2d and Linear (the caller derives the constants from the
/// scales as oneDNN does); <see cref="Int8Gemm"/> applies it to each register tile as it leaves the kernel, so the int32
/// sums are never stored.
/// </summary>
public sealed class Int8Requantization
{
    private readonly float[] _multipliers;
    private readonly float[] _biases;

    /// <summary>Creates the constants of one layer call.</summary>
    /// <param name="multipliers">Per output channel, the factor the biased sum is multiplied by: finite.</param>
    /// <param name="biases">Per output channel, the term added to the sum first (in the sum's units): finite.</param>
    /// <param name="zeroPoint">The output zero point, 0 to 255.</param>
    /// <param name="relu">Whether negative values become 0 before the zero point is added (a fused ReLU).</param>
    /// <exception cref="ArgumentException">The arrays are empty or differ in length, a constant is not finite, or the zero point is not a byte.</exception>
    public Int8Requantization(float[] multipliers, float[] biases, int zeroPoint, bool relu)
    {
        ArgumentNullException.ThrowIfNull(multipliers);
        ArgumentNullException.ThrowIfNull(biases);
        if (multipliers.Length == 0 || multipliers.Length != biases.Length)
            throw new ArgumentException($"a requantization needs one multiplier and one bias per channel, got {multipliers.Length} and {biases.Length}");
        if (!multipliers.All(float.IsFinite) || !biases.All(float.IsFinite))
            throw new ArgumentException("a requantization's multipliers and biases must be finite");
        if (zeroPoint is < 0 or > 255) throw new ArgumentException($"an unsigned 8-bit zero point is 0 to 255, got {zeroPoint}");
        _multipliers = (float[])multipliers.Clone();
        _biases = (float[])biases.Clone();
        ZeroPoint = zeroPoint;
        Relu = relu;
    }

    /// <summary>The number of output channels.</summary>
    public int Channels => _multipliers.Length;

    /// <summary>The output zero point.</summary>
    public int ZeroPoint { get; }

    /// <summary>Whether a ReLU is fused.</summary>
    public bool Relu { get; }

    /// <summary>One output by the definition (the scalar path, and the reference of the vector one).</summary>
    /// <param name="sum">The int32 sum.</param>
    /// <param name="channel">Its output channel.</param>
    public byte Apply(int sum, int channel)
    {
        var v = ((float)sum + _biases[channel]) * _multipliers[channel];
        if (Relu) v = MathF.Max(v, 0f);
        v = MathF.Round(v + ZeroPoint, MidpointRounding.ToEven);
        return (byte)Math.Clamp(v, 0f, 255f);
    }

    /// <summary>Requantizes <paramref name="count"/> sums of one channel, each less <paramref name="shift"/>, from
    /// <paramref name="src"/> to <paramref name="dst"/>; 16 at a time in 512-bit or 256-bit vectors where they run, with the
    /// scalar definition's bits (the same float32 operations in the same order, rounding half to even).</summary>
    internal unsafe void Row(int* src, int shift, byte* dst, int count, int channel)
    {
        var j = 0;
        if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
        {
            var b = Vector512.Create(_biases[channel]);
            var m = Vector512.Create(_multipliers[channel]);
            var zp = Vector512.Create((float)ZeroPoint);
            var s = Vector512.Create(shift);
            for (; j + 16 <= count; j += 16)
            {
                var v = (Vector512.ConvertToSingle(Vector512.Load(src + j) - s) + b) * m;
                if (Relu) v = Vector512.MaxNative(v, Vector512<float>.Zero);
                v = Vector512.Round(v + zp);
                // Clamped to 0..255, so vpmovdb's truncation keeps every value.
                var q = Vector512.ConvertToInt32(Vector512.MinNative(Vector512.MaxNative(v, Vector512<float>.Zero), Vector512.Create(255f)));
                Avx512F.ConvertToVector128Byte(q).Store(dst + j);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var (b, m, zp) = Vectors256(channel);
            var s = Vector256.Create(shift);
            for (; j + 16 <= count; j += 16)
            {
                Store16(Vector256.ConvertToSingle(Vector256.Load(src + j) - s), Vector256.ConvertToSingle(Vector256.Load(src + j + 8) - s), b, m, zp, dst + j);
            }
        }
        for (; j < count; j++) dst[j] = Apply(src[j] - shift, channel);
    }

    /// <summary>
    /// <see cref="Row(int*, int, byte*, int, int)"/> followed by <paramref name="add"/> of each output (first operand) and
    /// the byte of <paramref name="residual"/> at the same index (second), in registers: sixteen at a time in 256-bit
    /// vectors where they run, with the bits of the two run one after the other.
    /// </summary>
    internal unsafe void Row(int* src, int shift, byte* dst, int count, int channel, byte* residual, Int8Add add)
    {
        var j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var (b, m, zp) = Vectors256(channel);
            var s = Vector256.Create(shift);
            for (; j + 16 <= count; j += 16)
            {
                var lo = Convert(Vector256.ConvertToSingle(Vector256.Load(src + j) - s), b, m, zp);
                var hi = Convert(Vector256.ConvertToSingle(Vector256.Load(src + j + 8) - s), b, m, zp);
                var (r0, r1) = add.Widen(Vector128.Load(residual + j));
                var shorts = Vector256.Narrow(add.One(lo, r0), add.One(hi, r1));
                Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().Store(dst + j);
            }
        }
        for (; j < count; j++) dst[j] = add.Apply(Apply(src[j] - shift, channel), residual[j]);
    }

    /// <summary>Requantizes sums held exactly as float32 integers (the depthwise path's), one channel's row, with the
    /// bits of the int32 form: the conversion of an exact integer to float32 is the value itself.</summary>
    internal unsafe void Row(ReadOnlySpan<float> sums, Span<byte> dst, int channel)
    {
        if (dst.Length < sums.Length) throw new ArgumentException($"room for {dst.Length} bytes given for {sums.Length} sums");
        var j = 0;
        fixed (float* src = sums)
        fixed (byte* d = dst)
        {
            if (Vector256.IsHardwareAccelerated)
            {
                var b = Vector256.Create(_biases[channel]);
                var m = Vector256.Create(_multipliers[channel]);
                var zp = Vector256.Create((float)ZeroPoint);
                for (; j + 16 <= sums.Length; j += 16)
                {
                    Store16(Vector256.Load(src + j), Vector256.Load(src + j + 8), b, m, zp, d + j);
                }
            }
            for (; j < sums.Length; j++) d[j] = Apply((int)src[j], channel);
        }
    }

    /// <summary>The span form of the pointer one, for tests: <paramref name="dst"/> must hold <paramref name="src"/>'s length.</summary>
    internal unsafe void Row(ReadOnlySpan<int> src, int shift, Span<byte> dst, int channel)
    {
        if (dst.Length < src.Length) throw new ArgumentException($"room for {dst.Length} bytes given for {src.Length} sums");
        fixed (int* s = src)
        fixed (byte* d = dst)
            Row(s, shift, d, src.Length, channel);
    }

    /// <summary>A channel's bias and multiplier and the zero point, each in every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private (Vector256<float> Bias, Vector256<float> Multiplier, Vector256<float> ZeroPoint) Vectors256(int channel)
        => (Vector256.Create(_biases[channel]), Vector256.Create(_multipliers[channel]), Vector256.Create((float)ZeroPoint));

    /// <summary>Sixteen sums (as float32) requantized and stored as bytes at <paramref name="dst"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private unsafe void Store16(Vector256<float> lo, Vector256<float> hi, Vector256<float> b, Vector256<float> m, Vector256<float> zp, byte* dst)
    {
        var shorts = Vector256.Narrow(Convert(lo, b, m, zp), Convert(hi, b, m, zp));
        Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().Store(dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector256<int> Convert(Vector256<float> sum, Vector256<float> b, Vector256<float> m, Vector256<float> zp)
    {
        // The native max and min (maxps/minps) skip IEEE's NaN and signed-zero fix-ups: finite constants never make a NaN,
        // and ±0 give the same byte.
        var v = (sum + b) * m;
        if (Relu) v = Vector256.MaxNative(v, Vector256<float>.Zero);
        v = Vector256.Round(v + zp);
        return Vector256.ConvertToInt32(Vector256.MinNative(Vector256.MaxNative(v, Vector256<float>.Zero), Vector256.Create(255f)));
    }
}
