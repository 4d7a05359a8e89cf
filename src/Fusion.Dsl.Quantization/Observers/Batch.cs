using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>The checks every observer applies to a calibration batch, and the extrema it reads from one.</summary>
internal static class Batch
{
    /// <summary>The float32 elements of a batch, refused when the batch is null, int64, empty, or holds NaN or an infinity.</summary>
    public static ReadOnlySpan<float> Elements(Tensor batch, string observer)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (batch.DType != DType.Float32)
            throw new ArgumentException($"{observer} observes float32 batches, not {batch.DType}", nameof(batch));
        if (batch.Count == 0)
            throw new ArgumentException($"{observer} cannot observe an empty batch (shape [{string.Join(", ", batch.Dimensions)}])", nameof(batch));
        var x = batch.Float32;
        for (int i = 0; i < x.Length; i++)
            if (!float.IsFinite(x[i]))
                throw new ArgumentException($"{observer} cannot observe a batch holding {x[i]} (element {i}): calibration data must be finite", nameof(batch));
        return x;
    }

    /// <summary><c>torch.aminmax</c> of all elements.</summary>
    public static (float Min, float Max) AMinMax(ReadOnlySpan<float> x)
    {
        float min = x[0], max = x[0];
        foreach (var v in x)
        {
            if (v < min) min = v;
            if (v > max) max = v;
        }
        return (min, max);
    }

    /// <summary><c>torch.aminmax(y, dim=1)</c> of the batch with <paramref name="chAxis"/> moved to the front and the
    /// rest flattened: one minimum and maximum per channel. A channel axis outside the batch's rank is refused.</summary>
    public static (float[] Min, float[] Max) ChannelAMinMax(Tensor batch, int chAxis, string observer)
    {
        var x = Elements(batch, observer);
        int rank = batch.Rank;
        if (chAxis < -rank || chAxis >= rank || rank == 0)
            throw new ArgumentOutOfRangeException(nameof(chAxis), chAxis, $"{observer}'s ch_axis {chAxis} is out of range for a batch of rank {rank}");
        int axis = chAxis < 0 ? chAxis + rank : chAxis;
        int channels = batch.Size(axis);
        int inner = 1;
        for (int d = axis + 1; d < rank; d++) inner *= batch.Size(d);
        var min = new float[channels];
        var max = new float[channels];
        Array.Fill(min, float.PositiveInfinity);
        Array.Fill(max, float.NegativeInfinity);
        for (int i = 0; i < x.Length; i++)
        {
            int c = i / inner % channels;
            if (x[i] < min[c]) min[c] = x[i];
            if (x[i] > max[c]) max[c] = x[i];
        }
        return (min, max);
    }

    /// <summary>The running per-channel extrema after a batch: the batch's own on the first one, else each running
    /// value combined with the batch's by <paramref name="update"/> (running, current). A batch with another channel
    /// count than the running extrema is refused.</summary>
    public static (ImmutableArray<float> Min, ImmutableArray<float> Max) UpdateChannels(
        Tensor batch, int chAxis, string observer, ImmutableArray<float> runningMin, ImmutableArray<float> runningMax, Func<float, float, bool, float> update)
    {
        var (min, max) = ChannelAMinMax(batch, chAxis, observer);
        if (runningMin.Length != 0 && runningMin.Length != min.Length)
            throw new ArgumentException($"{observer} has running extrema for {runningMin.Length} channels but the batch has {min.Length} along ch_axis");
        for (int c = 0; c < runningMin.Length; c++)
        {
            min[c] = update(runningMin[c], min[c], true);
            max[c] = update(runningMax[c], max[c], false);
        }
        return (ImmutableArray.Create(min), ImmutableArray.Create(max));
    }
}
