using System.Runtime.CompilerServices;
using Fusion.Dsl.Layers;
using MathNet.Numerics.LinearAlgebra;

namespace Fusion.Dsl.Folding;

/// <summary>
/// Where a layer's weight keeps its channels, for every fold: the weight is a sequence of blocks of
/// <see cref="BlockLength"/> contiguous elements (the kernel; 1 for a Linear), each read from one input channel into one
/// output channel. A convolution's weight is <c>[out, in/groups, *kernel]</c>: block <c>(o, j)</c> feeds output
/// <c>o</c> from input <c>(o / (out/groups)) · (in/groups) + j</c>. A transposed convolution's is
/// <c>[in, out/groups, *kernel]</c>: block <c>(i, j)</c> feeds output <c>(i / (in/groups)) · (out/groups) + j</c> from
/// input <c>i</c> (PyTorch 1.13 reads dimension 1 as the output channel and fails for <c>groups &gt; 1</c>). A Linear is a
/// one-group convolution with a kernel of one.
/// </summary>
internal sealed class ChannelAxis
{
    private readonly int _groups;
    private readonly int _inPerGroup;
    private readonly int _outPerGroup;
    private readonly bool _transposed;

    private ChannelAxis(int outChannels, int inChannels, int groups, int blockLength, bool transposed)
    {
        OutChannels = outChannels;
        InChannels = inChannels;
        _groups = groups;
        _inPerGroup = inChannels / groups;
        _outPerGroup = outChannels / groups;
        _transposed = transposed;
        BlockLength = blockLength;
    }

    /// <summary>The channel layout of a convolution's weight (either kind, any rank and groups).</summary>
    public static ChannelAxis Of(Conv conv)
    {
        var blocks = conv.Transposed ? (long)conv.InChannels * (conv.OutChannels / conv.Groups) : (long)conv.OutChannels * (conv.InChannels / conv.Groups);
        return new(conv.OutChannels, conv.InChannels, conv.Groups, blocks == 0 ? 0 : (int)(conv.Weight.Count / blocks), conv.Transposed);
    }

    /// <summary>The channel layout of a Linear layer's weight <c>[out, in]</c>.</summary>
    public static ChannelAxis Of(Linear linear) => new(linear.OutFeatures, linear.InFeatures, 1, 1, transposed: false);

    /// <summary>Output channels of the layer.</summary>
    public int OutChannels { get; }

    /// <summary>Input channels of the layer.</summary>
    public int InChannels { get; }

    /// <summary>Contiguous elements read from one input channel into one output channel.</summary>
    public int BlockLength { get; }

    /// <summary>The output channel block <paramref name="block"/> feeds.</summary>
    public int OutOf(int block)
    {
        if (!_transposed) return block / _inPerGroup;
        var i = block / _outPerGroup;
        return i / _inPerGroup * _outPerGroup + block % _outPerGroup;
    }

    /// <summary>The input channel block <paramref name="block"/> reads.</summary>
    public int InOf(int block)
        => _transposed ? block / _outPerGroup : block / _inPerGroup / _outPerGroup * _inPerGroup + block % _inPerGroup;

    /// <summary>Consecutive elements that share one output channel: all of a channel's blocks for a layer whose output
    /// channel is weight dimension 0, one block for a transposed convolution.</summary>
    private int OutputRun => _transposed ? BlockLength : _inPerGroup * BlockLength;

    /// <summary>
    /// <c>W'[e] = W[e] · scale[out(e)]</c>, each element rounded to float32 once (<see cref="PendingFold.Element"/>): what
    /// folding a per-output-channel factor (a BatchNorm after the layer, a constant <c>mul</c>) does to the weight.
    /// </summary>
    public float[] ScaleOutputs(float[] weight, double[] scale)
    {
        // Every element is written below, so the array need not be zeroed first.
        var scaled = GC.AllocateUninitializedArray<float>(weight.Length);
        var run = OutputRun;
        if (run == 0) return scaled;
        ForRanges(weight.Length / run, weight.Length, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (first, end) =>
        {
            for (var r = first; r < end; r++) ScaleBlock(weight, scaled, r * run, run, scale[OutOf(r * run / BlockLength)]);
        });
        return scaled;
    }

    /// <summary><c>W'[e] = W[e] · scale[in(e)]</c>, rounded once: what folding a per-input-channel factor (a BatchNorm before
    /// the layer) does to the weight.</summary>
    public float[] ScaleInputs(float[] weight, double[] scale)
    {
        var scaled = GC.AllocateUninitializedArray<float>(weight.Length);
        if (BlockLength == 0) return scaled;
        for (var b = 0; b < weight.Length / BlockLength; b++) ScaleBlock(weight, scaled, b * BlockLength, BlockLength, scale[InOf(b)]);
        return scaled;
    }

    /// <summary>
    /// The layer applied to one constant per input channel, <c>W·t</c> with each kernel summed (a constant input is the same at
    /// every position), in float64 by MathNet: one matrix-vector product per group of the kernel sums. This is the bias a
    /// per-input-channel shift (a BatchNorm before the layer) adds. For layers whose output channel is weight dimension 0.
    /// </summary>
    public Vector<double> ApplyToInputs(float[] weight, Vector<double> t)
    {
        if (_transposed) throw new InvalidOperationException("input-channel folding is defined for non-transposed layers");
        var result = Vector<double>.Build.Dense(OutChannels);
        for (var g = 0; g < _groups; g++)
        {
            var firstOut = g * _outPerGroup;
            var sums = Matrix<double>.Build.Dense(_outPerGroup, _inPerGroup, (o, j) =>
            {
                var start = ((firstOut + o) * _inPerGroup + j) * BlockLength;
                var s = 0.0;
                for (var k = start; k < start + BlockLength; k++) s += weight[k];
                return s;
            });
            result.SetSubVector(firstOut, _outPerGroup, sums * t.SubVector(g * _inPerGroup, _inPerGroup));
        }
        return result;
    }

    /// <summary>target[k] = <see cref="PendingFold.Element"/>(source[k], scale) over one block, vectorised: widening to
    /// double, multiplying and narrowing rounds exactly as the scalar cast does, so the result is bit-identical to it.</summary>
    // The one SIMD kernel of folding, kept by measurement: computing resnet50's folded weights took a median of 174 ms with it
    // and 434 ms without (tools/bench/fold_simd.fsx, one pair of 7-run series on a 2-core Zen 4 under load from other builds). Fully optimised from the first
    // call, since a fusion runs each fold once and tiered compilation never gets to promote it.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleBlock(float[] source, float[] target, int start, int length, double scale)
    {
        var src = source.AsSpan(start, length);
        var dst = target.AsSpan(start, length);
        var k = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated && length >= System.Numerics.Vector<float>.Count)
        {
            var s = new System.Numerics.Vector<double>(scale);
            var n = System.Numerics.Vector<float>.Count;
            for (; k <= length - n; k += n)
            {
                System.Numerics.Vector.Widen(new System.Numerics.Vector<float>(src[k..]), out var lo, out var hi);
                System.Numerics.Vector.Narrow(lo * s, hi * s).CopyTo(dst[k..]);
            }
        }
        for (; k < length; k++) dst[k] = PendingFold.Element(src[k], scale);
    }

    /// <summary>
    /// Runs <paramref name="body"/> over 0..count-1, split into one contiguous range per core when the weight is large enough
    /// for the split to pay. Ranges, not one delegate call per channel: the loop then runs as fully optimised code from the
    /// first fusion.
    /// </summary>
    private static void ForRanges(int count, long elements, Action<int, int> body)
    {
        var parts = elements < ParallelThreshold || count < 2 ? 1 : Math.Min(count, Environment.ProcessorCount);
        if (parts == 1)
        {
            body(0, count);
            return;
        }
        Parallel.For(0, parts, p => body((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts)));
    }

    private const long ParallelThreshold = 1 << 18;
}
