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
        return Median(times);
    }

    private static double Median(double[] times)
    {
        Array.Sort(times);
        var n = times.Length;
        return n % 2 == 1 ? times[n / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
    }
}
