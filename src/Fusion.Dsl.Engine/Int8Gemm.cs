using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Signed 8-bit weights of an int8 GEMM packed once for <see cref="Int8Gemm"/>: rows in blocks of
/// <see cref="Int8Gemm.MR"/>, the depth in quads (four consecutive weights of a row in one int32, the unit of a u8×s8
/// dot product), zero-padded; and each row's sum, which turns the activations' zero point into one subtraction per
/// output (Σ w·(x − z) = Σ w·x − z·Σ w).
/// </summary>
internal sealed class Int8Weights
{
    private Int8Weights(int rows, int depth, int[] packed, int[] rowSums)
    {
        Rows = rows; Depth = depth; Packed = packed; RowSums = rowSums;
    }

    /// <summary>Output rows (channels).</summary>
    public int Rows { get; }

    /// <summary>Terms per dot product.</summary>
    public int Depth { get; }

    /// <summary>Depth quads: <c>⌈Depth / 4⌉</c>.</summary>
    public int Quads => (Depth + 3) / 4;

    /// <summary>Row blocks of <see cref="Int8Gemm.MR"/> × quads × <see cref="Int8Gemm.MR"/> words.</summary>
    internal int[] Packed { get; }

    /// <summary>Σ_k w[r, k] per row.</summary>
    internal int[] RowSums { get; }

    /// <summary>Weight <c>(r, k)</c>, read from its packed quad (the scalar path reads the same packs as the vectors).</summary>
    internal int At(int r, int k)
    {
        var (block, lane) = Math.DivRem(r, Int8Gemm.MR);
        return (sbyte)(Packed[(block * Quads + k / 4) * Int8Gemm.MR + lane] >> (8 * (k % 4)));
    }

    /// <summary>Packs <paramref name="weights"/>, row-major <c>[rows, depth]</c>.</summary>
    /// <exception cref="ArgumentException">A size is not positive, or the span does not hold rows·depth weights.</exception>
    public static Int8Weights Pack(ReadOnlySpan<sbyte> weights, int rows, int depth)
    {
        if (rows <= 0 || depth <= 0) throw new ArgumentException($"an int8 GEMM needs positive sizes, got {rows}x{depth}");
        if ((long)rows * depth != weights.Length) throw new ArgumentException($"{weights.Length} weights given for {rows}x{depth}");
        var quads = (depth + 3) / 4;
        var blocks = (rows + Int8Gemm.MR - 1) / Int8Gemm.MR;
        var packed = new int[checked(blocks * quads * Int8Gemm.MR)];
        var sums = new int[rows];
        for (var r = 0; r < rows; r++)
        {
            var row = weights.Slice(r * depth, depth);
            var (block, lane) = Math.DivRem(r, Int8Gemm.MR);
            for (var q = 0; q < quads; q++)
            {
                var word = 0;
                for (var b = 0; b < 4 && 4 * q + b < depth; b++) word |= (byte)row[4 * q + b] << (8 * b);
                packed[(block * quads + q) * Int8Gemm.MR + lane] = word;
            }
            foreach (var w in row) sums[r] += w;
        }
        return new Int8Weights(rows, depth, packed, sums);
    }
}

/// <summary>
/// The int8 GEMM of quantized convolutions and linear layers: <c>C[r, j] = Σ_k W[r, k]·(X[k, j] − z)</c> with
/// signed 8-bit weights, unsigned 8-bit activations of zero point <c>z</c> and exact int32 results (requantization is
/// the caller's). Activations are packed per call into quads along the depth, so each int32 lane of a vector takes
/// one column's four activations; a 4-row × 2-vector register tile multiplies them by broadcast weight quads.
/// AVX-512BW and AVX2 use <c>vpmaddubsw</c> + <c>vpmaddwd</c> when every activation is at most 127 (there its int16
/// pair sums cannot saturate) and an exact widening form otherwise; the scalar path sums plainly. Every path gives
/// the exact sum, so the bits do not depend on the instruction set. (.NET 10 exposes VNNI only as the VEX
/// <c>AvxVnni</c>, which AVX-512 parts without AVX-VNNI such as this project's Zen 4 lack; not used yet.)
/// </summary>
internal static unsafe class Int8Gemm
{
    /// <summary>Rows per register tile.</summary>
    public const int MR = 4;

    /// <summary>Which vector width runs (the test levels cap it with DOTNET_EnableAVX512 / DOTNET_EnableAVX).</summary>
    public static string Path => InstructionSets.Int8;

    /// <summary>
    /// Computes <paramref name="c"/> (<c>[w.Rows, columns]</c>, row-major) from <paramref name="w"/> and
    /// <paramref name="x"/> (<c>[w.Depth, columns]</c>, row-major) with activation zero point <paramref name="zeroPoint"/>,
    /// on up to <paramref name="threads"/> cores.
    /// </summary>
    /// <exception cref="ArgumentException">A size does not match, or the zero point is not a byte.</exception>
    public static void Run(Int8Weights w, byte[] x, int columns, int zeroPoint, int[] c, int threads = 1)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(c);
        if ((long)w.Depth * columns != x.Length) throw new ArgumentException($"{x.Length} activations given for {w.Depth}x{columns}");
        if ((long)w.Rows * columns != c.Length) throw new ArgumentException($"room for {c.Length} results given for {w.Rows}x{columns}");
        Run(w, x, 0, columns, zeroPoint, c, 0, threads);
    }

    /// <summary>
    /// As the other overload, with the activations starting at <paramref name="xOffset"/> of <paramref name="x"/> and
    /// the results written from <paramref name="cOffset"/> of <paramref name="c"/> (one image or one group of a larger
    /// buffer, without a copy).
    /// </summary>
    /// <exception cref="ArgumentException">A size or offset does not fit its array, or the zero point is not a byte.</exception>
    public static void Run(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint, int[] c, int cOffset, int threads)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(c);
        if (cOffset < 0 || (long)w.Rows * columns > c.Length - (long)cOffset)
            throw new ArgumentException($"room for {c.Length - (long)cOffset} results from offset {cOffset} given for {w.Rows}x{columns}");
        Dispatch(w, x, xOffset, columns, zeroPoint, new Sink(c, cOffset, null, 0, null, 0, null, null), threads);
    }

    private static void Dispatch(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint, Sink sink, int threads)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(x);
        if (columns <= 0) throw new ArgumentException($"an int8 GEMM needs at least one column, got {columns}");
        if (xOffset < 0 || (long)w.Depth * columns > x.Length - (long)xOffset)
            throw new ArgumentException($"{x.Length - (long)xOffset} activations from offset {xOffset} given for {w.Depth}x{columns}");
        if (zeroPoint is < 0 or > 255) throw new ArgumentException($"an unsigned 8-bit zero point is 0 to 255, got {zeroPoint}");
        if (Path == "scalar")
        {
            Scalar(w, x, xOffset, columns, zeroPoint, sink);
            return;
        }
        var sevenBit = !x.AsSpan(xOffset, w.Depth * columns).ContainsAnyInRange((byte)128, (byte)255);
        if (Path == "AVX-512BW")
        {
            if (sevenBit) Vectors<Dot4Lanes512, SevenBitForm>(w, x, xOffset, columns, zeroPoint, sink, threads);
            else Vectors<Dot4Lanes512, ExactForm>(w, x, xOffset, columns, zeroPoint, sink, threads);
        }
        else if (sevenBit) Vectors<Dot4Lanes256, SevenBitForm>(w, x, xOffset, columns, zeroPoint, sink, threads);
        else Vectors<Dot4Lanes256, ExactForm>(w, x, xOffset, columns, zeroPoint, sink, threads);
    }

    /// <summary>
    /// Computes the int8 GEMM as <see cref="Run(Int8Weights, byte[], int, int, int, int[], int, int)"/> and requantizes each
    /// result with <paramref name="requantization"/> as its register tile leaves the kernel, writing unsigned bytes
    /// <c>[w.Rows, columns]</c> to <paramref name="y"/> from <paramref name="yOffset"/>; row <c>r</c> is output channel
    /// <paramref name="firstChannel"/> + r of the requantization.
    /// </summary>
    /// <exception cref="ArgumentException">A size or offset does not fit its array, the rows pass the requantization's
    /// channels, or the zero point is not a byte.</exception>
    public static void Run(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint,
        Int8Requantization requantization, int firstChannel, byte[] y, int yOffset, int threads)
        => Run(w, x, xOffset, columns, zeroPoint, requantization, firstChannel, y, yOffset, null, null, threads);

    /// <summary>
    /// As the requantizing overload, then, when <paramref name="add"/> is given, each requantized output goes through
    /// <paramref name="add"/> with the element of <paramref name="residual"/> at the same index of the output (laid out
    /// as <paramref name="y"/>) before it leaves the registers: a convolution and the quantized add after it in one
    /// pass, with the bits of the two run one after the other.
    /// </summary>
    /// <exception cref="ArgumentException">As the requantizing overload, or the residual is shorter than the output.</exception>
    public static void Run(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint,
        Int8Requantization requantization, int firstChannel, byte[] y, int yOffset, byte[]? residual, Int8Add? add, int threads)
    {
        if (add is not null && (residual is null || residual.Length < y.Length))
            throw new ArgumentException($"a fused add needs a residual laid out as the output ({y.Length} bytes), got {residual?.Length.ToString() ?? "none"}");
        ArgumentNullException.ThrowIfNull(requantization);
        ArgumentNullException.ThrowIfNull(y);
        ArgumentNullException.ThrowIfNull(w);
        if (firstChannel < 0 || firstChannel + (long)w.Rows > requantization.Channels)
            throw new ArgumentException($"rows {firstChannel}..{firstChannel + (long)w.Rows - 1} pass the requantization's {requantization.Channels} channels");
        if (yOffset < 0 || (long)w.Rows * columns > y.Length - (long)yOffset)
            throw new ArgumentException($"room for {y.Length - (long)yOffset} outputs from offset {yOffset} given for {w.Rows}x{columns}");
        Dispatch(w, x, xOffset, columns, zeroPoint, new Sink(null, 0, y, yOffset, requantization, firstChannel, add is null ? null : residual, add), threads);
    }

    /// <summary>Where a GEMM's results go: int32 sums, or requantized bytes.</summary>
    private readonly record struct Sink(int[]? C, int COffset, byte[]? Y, int YOffset, Int8Requantization? Requantization, int FirstChannel,
        byte[]? Residual, Int8Add? Add);

    private static void Scalar(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint, Sink sink)
    {
        for (var r = 0; r < w.Rows; r++)
            for (var j = 0; j < columns; j++)
            {
                var sum = 0;
                for (var k = 0; k < w.Depth; k++) sum += w.At(r, k) * (x[xOffset + k * columns + j] - zeroPoint);
                var at = sink.YOffset + r * columns + j;
                if (sink.Requantization is { } rq)
                    sink.Y![at] = sink.Add is { } add ? add.Apply(rq.Apply(sum, sink.FirstChannel + r), sink.Residual![at]) : rq.Apply(sum, sink.FirstChannel + r);
                else sink.C![sink.COffset + r * columns + j] = sum;
            }
    }

    /// <summary>The dot-product form, chosen per call and compiled per form.</summary>
    private interface IForm { static abstract bool SevenBit { get; } }
    private readonly struct SevenBitForm : IForm { public static bool SevenBit => true; }
    private readonly struct ExactForm : IForm { public static bool SevenBit => false; }

    private static void Vectors<TV, TForm>(Int8Weights w, byte[] x, int xOffset, int columns, int zeroPoint, Sink sink, int threads)
        where TV : struct, IDot4<TV> where TForm : struct, IForm
    {
        var nr = 2 * TV.Count;
        var panels = (columns + nr - 1) / nr;
        var padded = panels * nr;
        var quads = w.Quads;
        // Activations as quads: word (q, j) holds x[4q .. 4q+3, j]; the depth's padding is zero, which meets zero weights.
        var length = checked(quads * padded);
        var packed = System.Buffers.ArrayPool<int>.Shared.Rent(length);
        var depth = w.Depth;
        // One task per quad row: four source rows interleaved into words, the columns past the end zeroed.
        Par.For(quads, threads, 4L * padded, q =>
        {
            fixed (byte* px = x)
            fixed (int* dst = &packed[q * padded])
            {
                var s0 = px + xOffset + (long)4 * q * columns;
                var present = Math.Min(4, depth - 4 * q);
                if (present == 4) Interleave(s0, columns, dst);
                else
                {
                    new Span<int>(dst, columns).Clear();
                    for (var b = 0; b < present; b++)
                    {
                        var src = s0 + (long)b * columns;
                        var bytes = (byte*)dst + b;
                        for (var j = 0; j < columns; j++) bytes[4 * j] = src[j];
                    }
                }
                new Span<int>(dst + columns, padded - columns).Clear();
            }
        });
        var rows = w.Rows;
        Par.For(panels, threads, (long)rows * quads * 4 * nr, p =>
        {
            var tile = stackalloc int[MR * nr];
            fixed (int* pw = w.Packed)
            fixed (int* pa = packed)
            fixed (int* sums = w.RowSums)
            fixed (int* c0 = sink.C)
            fixed (byte* y0 = sink.Y)
            fixed (byte* r0 = sink.Residual)
            {
                var rq = sink.Requantization;
                for (var block = 0; block * MR < rows; block++)
                {
                    Kernel<TV, TForm>(pw + (long)block * quads * MR, pa + (long)p * nr, padded, quads, tile, nr);
                    var rowCount = Math.Min(MR, rows - block * MR);
                    var colCount = Math.Min(nr, columns - p * nr);
                    for (var i = 0; i < rowCount; i++)
                    {
                        var r = block * MR + i;
                        // Σ w·(x − z) = Σ w·x − z·Σ w: the zero point costs one subtraction per output.
                        var shift = zeroPoint * sums[r];
                        var at = (long)r * columns + p * nr;
                        if (rq is not null)
                        {
                            var dst = y0 + sink.YOffset + at;
                            if (sink.Add is { } add) rq.Row(tile + i * nr, shift, dst, colCount, sink.FirstChannel + r, r0 + sink.YOffset + at, add);
                            else rq.Row(tile + i * nr, shift, dst, colCount, sink.FirstChannel + r);
                        }
                        else
                        {
                            var row = c0 + sink.COffset + at;
                            var j = 0;
                            for (; j + TV.Count <= colCount; j += TV.Count) TV.Subtract(tile + i * nr + j, shift, row + j);
                            for (; j < colCount; j++) row[j] = tile[i * nr + j] - shift;
                        }
                    }
                }
            }
        });
        System.Buffers.ArrayPool<int>.Shared.Return(packed);
    }

    /// <summary>Four rows of <paramref name="columns"/> bytes from <paramref name="s0"/> (one row after another) as
    /// words, <c>dst[j] = s0[j] | s1[j] &lt;&lt; 8 | s2[j] &lt;&lt; 16 | s3[j] &lt;&lt; 24</c>: sixteen columns at a time
    /// with SSE2's byte and word unpacks, which interleave within 128 bits and so keep the columns in order.</summary>
    private static void Interleave(byte* s0, int columns, int* dst)
    {
        byte* s1 = s0 + columns, s2 = s1 + columns, s3 = s2 + columns;
        var j = 0;
        if (Sse2.IsSupported)
            for (; j + 16 <= columns; j += 16)
            {
                Vector128<byte> r0 = Sse2.LoadVector128(s0 + j), r1 = Sse2.LoadVector128(s1 + j);
                Vector128<byte> r2 = Sse2.LoadVector128(s2 + j), r3 = Sse2.LoadVector128(s3 + j);
                var low01 = Sse2.UnpackLow(r0, r1).AsInt16();
                var high01 = Sse2.UnpackHigh(r0, r1).AsInt16();
                var low23 = Sse2.UnpackLow(r2, r3).AsInt16();
                var high23 = Sse2.UnpackHigh(r2, r3).AsInt16();
                Sse2.Store((short*)(dst + j), Sse2.UnpackLow(low01, low23));
                Sse2.Store((short*)(dst + j + 4), Sse2.UnpackHigh(low01, low23));
                Sse2.Store((short*)(dst + j + 8), Sse2.UnpackLow(high01, high23));
                Sse2.Store((short*)(dst + j + 12), Sse2.UnpackHigh(high01, high23));
            }
        for (; j < columns; j++) dst[j] = s0[j] | (s1[j] << 8) | (s2[j] << 16) | (s3[j] << 24);
    }

    /// <summary>One 4-row × 2-vector tile over the whole depth, its eight accumulators in registers, written to
    /// <paramref name="tile"/> (<c>[MR, nr]</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel<TV, TForm>(int* w, int* a, int stride, int quads, int* tile, int nr)
        where TV : struct, IDot4<TV> where TForm : struct, IForm
    {
        TV c00 = TV.Zero, c01 = TV.Zero, c10 = TV.Zero, c11 = TV.Zero, c20 = TV.Zero, c21 = TV.Zero, c30 = TV.Zero, c31 = TV.Zero;
        var half = TV.Count;
        for (var q = 0; q < quads; q++, w += MR, a += stride)
        {
            var x0 = TV.Load((byte*)a);
            var x1 = TV.Load((byte*)(a + half));
            var w0 = TV.Broadcast(w[0]);
            var w1 = TV.Broadcast(w[1]);
            var w2 = TV.Broadcast(w[2]);
            var w3 = TV.Broadcast(w[3]);
            if (TForm.SevenBit)
            {
                c00 = TV.DotSevenBit(c00, x0, w0); c01 = TV.DotSevenBit(c01, x1, w0);
                c10 = TV.DotSevenBit(c10, x0, w1); c11 = TV.DotSevenBit(c11, x1, w1);
                c20 = TV.DotSevenBit(c20, x0, w2); c21 = TV.DotSevenBit(c21, x1, w2);
                c30 = TV.DotSevenBit(c30, x0, w3); c31 = TV.DotSevenBit(c31, x1, w3);
            }
            else
            {
                c00 = TV.DotExact(c00, x0, w0); c01 = TV.DotExact(c01, x1, w0);
                c10 = TV.DotExact(c10, x0, w1); c11 = TV.DotExact(c11, x1, w1);
                c20 = TV.DotExact(c20, x0, w2); c21 = TV.DotExact(c21, x1, w2);
                c30 = TV.DotExact(c30, x0, w3); c31 = TV.DotExact(c31, x1, w3);
            }
        }
        c00.Store(tile); c01.Store(tile + half);
        c10.Store(tile + nr); c11.Store(tile + nr + half);
        c20.Store(tile + 2 * nr); c21.Store(tile + 2 * nr + half);
        c30.Store(tile + 3 * nr); c31.Store(tile + 3 * nr + half);
    }
}
