namespace Fusion.Dsl.Engine;

/// <summary>
/// Arrays kept for reuse by later layers and later passes, per exact length (a tensor's storage must match its element
/// count), up to a byte limit. A fresh multi-megabyte array costs more in page faults on first touch than a 1×1
/// convolution costs in arithmetic, so passes over a hook-free model hand dead intermediates back here (through
/// <see cref="Pass.Release"/>) and later outputs come from here. Each <see cref="EngineSession"/> owns one; the
/// <see cref="Forward.Run(Algebra.Module, Tensors.Tensor, ForwardOptions?)"/> calls share one process-wide.
/// <para>
/// Only arrays resting here count against the limit: an array a running pass holds is its working set, not pooled. A
/// lock guards every change, so the limit holds exactly even when several passes give arrays back at once (a check
/// and a separate add could let two of them pass it together).
/// </para>
/// </summary>
internal sealed class BufferPool
{
    /// <summary>The limit when none is given (256 MiB): more than the intermediates of a zoo network's batch-1 pass.</summary>
    public const long DefaultMaxBytes = 256L << 20;

    /// <summary>Small arrays are cheap to allocate; recycling them is not worth the bookkeeping.</summary>
    public const int MinPooledLength = 1 << 12;

    /// <summary>Arrays kept per exact length: a pass rarely has more intermediates of one size alive at once.</summary>
    private const int PerLength = 8;

    private readonly Dictionary<int, Stack<float[]>> _stacks = [];
    private readonly Lock _lock = new();
    private long _bytes;
    private long _peakBytes;
    private bool _closed;

    /// <summary>A pool that keeps at most <paramref name="maxBytes"/> bytes of arrays (0 keeps none).</summary>
    public BufferPool(long maxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        MaxBytes = maxBytes;
    }

    /// <summary>The most bytes of arrays the pool keeps.</summary>
    public long MaxBytes { get; }

    /// <summary>Bytes of the arrays resting in the pool now.</summary>
    public long Bytes
    {
        get { lock (_lock) return _bytes; }
    }

    /// <summary>The most bytes that ever rested in the pool at once (never above <see cref="MaxBytes"/>).</summary>
    public long PeakBytes
    {
        get { lock (_lock) return _peakBytes; }
    }

    /// <summary>A pooled array of exactly <paramref name="length"/> floats (contents unspecified), or null.</summary>
    public float[]? TryTake(int length)
    {
        lock (_lock)
        {
            if (!_stacks.TryGetValue(length, out var stack) || !stack.TryPop(out var array)) return null;
            _bytes -= (long)length * sizeof(float);
            return array;
        }
    }

    /// <summary>Keeps <paramref name="array"/> for reuse unless that would pass the limit, its length already has
    /// enough arrays, or the pool is closed; the caller must not use it afterwards either way.</summary>
    public void Give(float[] array)
    {
        var bytes = (long)array.Length * sizeof(float);
        lock (_lock)
        {
            if (_closed || _bytes + bytes > MaxBytes) return;
            if (!_stacks.TryGetValue(array.Length, out var stack)) _stacks[array.Length] = stack = new Stack<float[]>();
            if (stack.Count >= PerLength) return;
            stack.Push(array);
            _bytes += bytes;
            _peakBytes = Math.Max(_peakBytes, _bytes);
        }
    }

    /// <summary>Drops every array and keeps none from now on (a disposed session's passes still running give theirs
    /// back to nothing).</summary>
    public void Close()
    {
        lock (_lock)
        {
            _closed = true;
            _stacks.Clear();
            _bytes = 0;
        }
    }
}
