namespace Fusion.Dsl.Engine;

/// <summary>Runs independent work items on up to a given number of cores (inline when the work is too small to share).</summary>
internal static class Par
{
    /// <summary>Below this many element operations in total, a job runs on the calling thread.</summary>
    private const long MinParallelWork = 1 << 15;

    /// <summary>Runs <paramref name="body"/> for 0..count-1; <paramref name="workPerItem"/> estimates each item's cost.</summary>
    public static void For(int count, int threads, long workPerItem, Action<int> body)
    {
        if (count <= 0) return;
        if (threads <= 1 || count == 1 || (long)count * workPerItem < MinParallelWork)
        {
            for (var i = 0; i < count; i++) body(i);
            return;
        }
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
    }
}
