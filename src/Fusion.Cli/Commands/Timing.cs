using System.Diagnostics;

namespace Fusion.Cli.Commands;

/// <summary>Honest timing: warm-up runs first, then the median of several measured runs.</summary>
internal static class Timing
{
    public static double MedianMs(Action action, int runs, int warmup = 1)
    {
        for (var i = 0; i < warmup; i++) action();
        var times = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
    }
}
