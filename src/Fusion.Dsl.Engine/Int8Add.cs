using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The element-wise sum of two 8-bit quantized tensors requantized to a third scale and zero point, as PyTorch 1.13's
/// quantized <c>add</c> and <c>add_relu</c> compute it on the CPU:
/// <c>q = clamp(zp + round_half_even(max?((a − a_zp)·a_scale + (b − b_zp)·b_scale, 0)·(1/scale)))</c>, every step in
/// float32 in that order and without a fused multiply-add (the scalar <c>quantize_val</c> path). Sixteen elements at a
/// time in 256-bit vectors where they run, the same operations lane by lane, so the bits equal the scalar definition's.
/// <c>QFunctional.add</c> runs on it, and so does a convolution whose output goes straight into an add
/// (<see cref="Int8Convolution.Requantize(byte[], int, int, int, int, Int8Requantization, byte[], Int8Add, int)"/>).
/// </summary>
public sealed class Int8Add
{
    private readonly float _scaleA, _scaleB, _inverse;
    private readonly int _zeroA, _zeroB, _qmin, _qmax;
    private readonly long _zeroPoint;

    /// <summary>Creates the constants of one add.</summary>
    /// <param name="scaleA">The first input's scale (PyTorch narrows it to float32, as this does).</param>
    /// <param name="zeroA">The first input's zero point.</param>
    /// <param name="scaleB">The second input's scale.</param>
    /// <param name="zeroB">The second input's zero point.</param>
    /// <param name="scale">The output scale.</param>
    /// <param name="zeroPoint">The output zero point.</param>
    /// <param name="relu">Whether negative sums become 0 before quantizing (<c>add_relu</c>).</param>
    /// <param name="signed">Whether the tensors are qint8 (bytes read as two's complement, range −128..127) rather than quint8.</param>
    /// <exception cref="ArgumentException">A scale is not positive and finite, or a zero point lies outside the dtype's range.</exception>
    public Int8Add(double scaleA, int zeroA, double scaleB, int zeroB, double scale, long zeroPoint, bool relu, bool signed)
    {
        (_qmin, _qmax) = signed ? (-128, 127) : (0, 255);
        foreach (var (s, name) in new[] { (scaleA, "first input"), (scaleB, "second input"), (scale, "output") })
            if (!(s > 0) || !double.IsFinite(s) || !float.IsFinite((float)s) || (float)s == 0f)
                throw new ArgumentException($"an int8 add's {name} scale must be positive and finite in float32, got {s}");
        foreach (var (z, name) in new[] { ((long)zeroA, "first input"), (zeroB, "second input"), (zeroPoint, "output") })
            if (z < _qmin || z > _qmax)
                throw new ArgumentException($"an int8 add's {name} zero point {z} is outside {_qmin}..{_qmax}");
        (_scaleA, _scaleB, _inverse) = ((float)scaleA, (float)scaleB, 1f / (float)scale);
        (_zeroA, _zeroB, _zeroPoint) = (zeroA, zeroB, zeroPoint);
        Relu = relu;
        Signed = signed;
        _vectors = new Constants(this);
    }

    /// <summary>The constants in vectors, made once (a fused epilogue calls <see cref="One"/> per short row).</summary>
    private readonly Constants _vectors;

    /// <summary>Whether negative sums become 0.</summary>
    public bool Relu { get; }

    /// <summary>Whether the bytes are qint8 values.</summary>
    public bool Signed { get; }

    /// <summary>Elements <paramref name="start"/> .. <paramref name="start"/> + <paramref name="count"/> − 1 of the
    /// stored bytes <paramref name="a"/> and <paramref name="b"/>, written to the same elements of <paramref name="y"/>
    /// (which may be <paramref name="a"/> or <paramref name="b"/> itself).</summary>
    /// <exception cref="ArgumentException">The range lies outside one of the arrays.</exception>
    public unsafe void Run(byte[] a, byte[] b, byte[] y, int start, int count)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(y);
        if (start < 0 || count < 0 || (long)start + count > Math.Min(y.Length, Math.Min(a.Length, b.Length)))
            throw new ArgumentException($"elements {start}..{(long)start + count - 1} are outside the arrays ({a.Length}, {b.Length} and {y.Length} bytes)");
        fixed (byte* pa = a)
        fixed (byte* pb = b)
        fixed (byte* py = y)
            Run(pa + start, pb + start, py + start, count);
    }

    /// <summary>Every element of <paramref name="a"/> and <paramref name="b"/> into <paramref name="y"/>, in equal chunks
    /// shared among up to <paramref name="threads"/> cores (each element's bits do not depend on it).</summary>
    /// <exception cref="ArgumentException">The arrays differ in length, or <paramref name="threads"/> is below 1.</exception>
    public void Run(byte[] a, byte[] b, byte[] y, int threads)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(y);
        if (a.Length != y.Length || b.Length != y.Length)
            throw new ArgumentException($"an int8 add takes arrays of one length, got {a.Length}, {b.Length} and {y.Length}");
        if (threads < 1) throw new ArgumentException($"an int8 add needs at least one thread, got {threads}");
        const int chunk = 1 << 15;
        Par.For((y.Length + chunk - 1) / chunk, threads, chunk, c => Run(a, b, y, c * chunk, Math.Min(chunk, y.Length - c * chunk)));
    }

    /// <summary><paramref name="count"/> elements from the pointers (the caller has checked them); <paramref name="y"/>
    /// may be <paramref name="a"/> or <paramref name="b"/>, as each vector is read before it is written.</summary>
    internal unsafe void Run(byte* a, byte* b, byte* y, int count)
    {
        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 16 <= count; i += 16)
            {
                var (a0, a1) = Widen(Vector128.Load(a + i));
                var (b0, b1) = Widen(Vector128.Load(b + i));
                var shorts = Vector256.Narrow(One(a0, b0), One(a1, b1));
                // Every lane is within the dtype's range after the clamp, so truncating narrows keep the values.
                Vector128.Narrow(shorts.GetLower(), shorts.GetUpper()).AsByte().Store(y + i);
            }
        }
        for (; i < count; i++) y[i] = Apply(a[i], b[i]);
    }

    /// <summary>One element by the definition: the stored bytes in, the stored byte out.</summary>
    public byte Apply(byte a, byte b)
    {
        int va = Signed ? (sbyte)a : a, vb = Signed ? (sbyte)b : b;
        float sum = (float)(va - _zeroA) * _scaleA + (float)(vb - _zeroB) * _scaleB;
        if (Relu) sum = MathF.Max(sum, 0f);
        // PyTorch's quantize_val: the sum in float32, cast to int64 (a value beyond int64 becomes its minimum on x86,
        // hence the dtype's minimum), then clamped.
        float q = _zeroPoint + MathF.Round(sum * _inverse, MidpointRounding.ToEven);
        long v = q >= -9.223372E18f && q < 9.223372E18f ? (long)q : long.MinValue;
        return unchecked((byte)Math.Clamp(v, _qmin, _qmax));
    }

    /// <summary>The constants in vectors.</summary>
    private readonly struct Constants(Int8Add add)
    {
        public readonly Vector256<float> ScaleA = Vector256.Create(add._scaleA), ScaleB = Vector256.Create(add._scaleB), Inverse = Vector256.Create(add._inverse);
        public readonly Vector256<int> ZeroA = Vector256.Create(add._zeroA), ZeroB = Vector256.Create(add._zeroB);
        public readonly Vector256<float> ZeroPoint = Vector256.Create((float)add._zeroPoint), Low = Vector256.Create((float)add._qmin), High = Vector256.Create((float)add._qmax);
    }

    /// <summary>Sixteen stored bytes as two vectors of their values (sign-extended for qint8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal (Vector256<int>, Vector256<int>) Widen(Vector128<byte> v)
    {
        if (Signed)
        {
            var s = v.AsSByte();
            var shorts = Vector256.Create(Vector128.WidenLower(s), Vector128.WidenUpper(s));
            return (Vector256.WidenLower(shorts), Vector256.WidenUpper(shorts));
        }
        var u = Vector256.Create(Vector128.WidenLower(v), Vector128.WidenUpper(v));
        return (Vector256.WidenLower(u).AsInt32(), Vector256.WidenUpper(u).AsInt32());
    }

    /// <summary>Eight elements by the definition, from their values (not their stored bytes) to the output's values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Vector256<int> One(Vector256<int> a, Vector256<int> b)
    {
        ref readonly var c = ref _vectors;
        // The native max and min (maxps/minps) skip IEEE's NaN and signed-zero fix-ups: a sum is finite, ±0 give the same
        // output, and a NaN product (0·∞ from a float32 scale that is subnormal) fails the range test and gives the minimum.
        var sum = Vector256.ConvertToSingle(a - c.ZeroA) * c.ScaleA + Vector256.ConvertToSingle(b - c.ZeroB) * c.ScaleB;
        if (Relu) sum = Vector256.MaxNative(sum, Vector256<float>.Zero);
        // Apply's zp + round(x·(1/scale)) and its clamp after the int64 cast: the sum is a whole number (or beyond every
        // 8-bit bound), so clamping first and truncating gives the same value; one beyond int64 gives the minimum.
        var q = Vector256.Round(sum * c.Inverse) + c.ZeroPoint;
        var inRange = Vector256.GreaterThanOrEqual(q, Vector256.Create(-9.223372E18f)) & Vector256.LessThan(q, Vector256.Create(9.223372E18f));
        return Vector256.ConvertToInt32(Vector256.ConditionalSelect(inRange, Vector256.MinNative(Vector256.MaxNative(q, c.Low), c.High), c.Low));
    }
}
