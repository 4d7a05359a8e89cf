using System.Diagnostics;

namespace Fusion.Dsl.Engine;

/// <summary>
/// The engine's own workers for <see cref="Par.For"/>: one thread per extra core, which spins for a short while after
/// each job before it sleeps. A forward pass is a chain of parallel regions separated by microseconds of serial work
/// (mobilenet_v2 has about 150), and handing each one to the .NET thread pool costs a wake-up per region; spinning
/// workers pick the next region up at once, as ONNX Runtime's and oneDNN's pools do. Items are claimed one at a time
/// from a shared counter, so which thread computes an item never changes what it computes.
/// <para>
/// One job runs at a time: a caller that finds the pool busy (another forward pass on another thread) or that is itself
/// inside a job gets <c>false</c> from <see cref="TryRun"/> and falls back to the thread pool or to its own thread.
/// </para>
/// </summary>
internal sealed class WorkerPool
{
    /// <summary>How long an idle worker spins before it sleeps: longer than the serial gaps inside a pass, short enough
    /// that a finished pass leaves no core busy for more than a blink.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs

    /// <summary>
    /// The process's pool: <see cref="Environment.ProcessorCount"/> − 1 workers, started on first use; none when the
    /// environment variable <c>FUSION_SPIN</c> is <c>0</c> (for machines shared with other busy processes, where a
    /// spinning worker takes time from them: parallel loops then go to the .NET thread pool, as ONNX Runtime's
    /// <c>allow_spinning=0</c> does).
    /// </summary>
    public static WorkerPool Shared => LazyShared.Value;

    private static readonly Lazy<WorkerPool> LazyShared = new(() =>
        new WorkerPool(Environment.GetEnvironmentVariable("FUSION_SPIN") == "0" ? 0 : Environment.ProcessorCount - 1));

    [ThreadStatic] private static bool inJob;

    /// <summary>Whether the current thread is running one of the pool's jobs (a nested parallel loop then runs inline).</summary>
    public static bool InJob => inJob;

    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private int _busy;
    private int _generation;
    private Action<int>? _body;
    private int _count;
    private int _next;
    private int _active;

    /// <summary>Per worker, for the current job: <see cref="Waiting"/>, <see cref="Running"/> or <see cref="Done"/>.</summary>
    private readonly int[] _state;

    private const int Waiting = 0;
    private const int Running = 1;
    private const int Done = 2;
    private Exception? _error;

    private WorkerPool(int workers)
    {
        _wake = new SemaphoreSlim[Math.Max(0, workers)];
        _sleeping = new int[_wake.Length];
        _state = new int[_wake.Length];
        for (var i = 0; i < _wake.Length; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            var index = i;
            new Thread(() => Work(index)) { IsBackground = true, Name = $"Fusion.Dsl.Engine worker {i + 1}" }.Start();
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> for 0..count-1 on the calling thread and up to <paramref name="threads"/> − 1 workers,
    /// and returns true; returns false without running anything when the pool is busy, has no workers, or the caller is
    /// a job's own thread. The first exception a body throws is rethrown here after every thread has stopped.
    /// </summary>
    public bool TryRun(int count, int threads, Action<int> body)
    {
        if (inJob || _wake.Length == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0) return false;
        try
        {
            _body = body;
            _count = count;
            _next = 0;
            _error = null;
            _active = Math.Min(Math.Min(threads - 1, _wake.Length), count - 1);
            for (var i = 0; i < _active; i++) _state[i] = Waiting;
            Interlocked.Increment(ref _generation); // publishes the fields above to the workers
            for (var i = 0; i < _active; i++)
                if (Interlocked.Exchange(ref _sleeping[i], 0) == 1) _wake[i].Release();
            inJob = true;
            try { Items(); }
            finally { inJob = false; }
            // A worker that has not started by now (descheduled on a busy machine) is struck off rather than waited
            // for: every item is claimed already. One that started is waited for until its last item is done.
            for (var i = 0; i < _active; i++)
            {
                if (Interlocked.CompareExchange(ref _state[i], Done, Waiting) == Waiting) continue;
                var spin = new SpinWait();
                while (Volatile.Read(ref _state[i]) != Done) spin.SpinOnce(-1);
            }
            _body = null;
            if (_error is { } e) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
            return true;
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Claims and runs items until none is left; the first exception stops every thread's claiming.</summary>
    private void Items()
    {
        var body = _body!;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < _count)
        {
            try { body(i); }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
                Volatile.Write(ref _next, _count);
            }
        }
    }

    private void Work(int index)
    {
        inJob = true;
        var seen = 0;
        while (true)
        {
            var until = Stopwatch.GetTimestamp() + SpinTicks;
            var spun = true;
            while (Volatile.Read(ref _generation) == seen)
            {
                if (spun && Stopwatch.GetTimestamp() < until)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                spun = false;
                // Announce sleep, then look once more: a job published in between either sees the flag and releases
                // the semaphore, or is seen here (and then a release that raced in is consumed).
                Volatile.Write(ref _sleeping[index], 1);
                if (Volatile.Read(ref _generation) != seen)
                {
                    if (Interlocked.Exchange(ref _sleeping[index], 0) == 0) _wake[index].Wait();
                    break;
                }
                _wake[index].Wait();
            }
            // A consistent view of one job. Should the caller move on to the next job between these reads (it struck
            // this worker off), joining that next job is still right: its fields are the ones Items reads.
            var generation = Volatile.Read(ref _generation);
            var active = Volatile.Read(ref _active);
            if (Volatile.Read(ref _generation) != generation) continue;
            seen = generation;
            if (index < active && Interlocked.CompareExchange(ref _state[index], Running, Waiting) == Waiting)
            {
                Items();
                Volatile.Write(ref _state[index], Done);
            }
        }
    }
}
