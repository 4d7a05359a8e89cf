using System.Diagnostics;
using System.Globalization;

namespace Fusion.Cli.Commands;

/// <summary>Honest timing: warm-up runs first, then the median of several measured runs, with their spread.</summary>
internal static class Timing
{
    /// <summary>The median, fastest and slowest of the measured runs, in milliseconds.</summary>
    public readonly record struct Sample(double Median, double Min, double Max, int Runs)
    {
        /// <summary>Whether the two samples' ranges overlap: their medians then differ by no more than the runs' spread.</summary>
        public bool Overlaps(Sample other) => Min <= other.Max && other.Min <= Max;

        /// <summary>"12.3 ms (runs 12.1-13.0)": the median, then the fastest and slowest run, each in <paramref name="format"/>.</summary>
        public string Describe(string format)
        {
            string F(double v) => v.ToString(format, CultureInfo.InvariantCulture);
            return $"{F(Median)} ms (runs {F(Min)}-{F(Max)})";
        }
    }

    public static double MedianMs(Action action, int runs, int warmup = 1) => Measure(action, runs, warmup).Median;

    /// <summary>Runs <paramref name="action"/> <paramref name="warmup"/> times untimed, then <paramref name="runs"/> times timed.</summary>
    public static Sample Measure(Action action, int runs, int warmup = 1)
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
        var median = runs % 2 == 1 ? times[runs / 2] : (times[runs / 2 - 1] + times[runs / 2]) / 2;
        return new Sample(median, times[0], times[^1], runs);
    }
}
