using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Fusion.Dsl;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion bench --memory</c>: the peak working set (resident memory) of the whole process while it runs a zoo network's
/// forward pass, unfused and then fused, beside the size of the weights and of the activations. Linux only: it reads
/// <c>VmRSS</c>/<c>VmHWM</c> from <c>/proc/self/status</c> and resets the peak through <c>/proc/self/clear_refs</c>, so each
/// peak covers one measurement (two passes: the first packs the weights for the GEMM kernels, the second is the steady state).
/// </summary>
/// <remarks>
/// Activations are the outputs of every layer call in one pass plus the input: what an engine that kept every intermediate
/// would hold. Weights are the model's state tensors. The peak includes the .NET runtime, the model, the engine's packed copies
/// of the weights and its pooled buffers; the other model has been dropped and the heap compacted before each measurement.
/// </remarks>
internal static class BenchMemory
{
    private const string Status = "/proc/self/status";
    private const string ClearRefs = "/proc/self/clear_refs";

    public static int Run(string name, int threads, int batch, bool json)
    {
        if (!File.Exists(Status) || !File.Exists(ClearRefs))
            throw new UsageException("bench --memory reads the peak working set from Linux's /proc/self/status and resets it " +
                                     "through /proc/self/clear_refs, which this system does not have");
        var baseline = Kb("VmRSS");
        var options = new ForwardOptions { Threads = threads };
        var (unfused, activations, fusedModel, x) = MeasureUnfused(name, batch, options);
        var fused = Measure(fusedModel, x, options);
        var report = new Dictionary<string, object>
        {
            ["model"] = name, ["threads"] = threads, ["batch"] = batch, ["activation_bytes"] = activations, ["baseline_rss_bytes"] = baseline,
            ["weights_unfused_bytes"] = unfused.Weights, ["rss_before_unfused_bytes"] = unfused.Before,
            ["peak_rss_unfused_bytes"] = unfused.Peak, ["peak_ratio_unfused"] = Math.Round(unfused.Ratio(activations), 3),
            ["weights_fused_bytes"] = fused.Weights, ["rss_before_fused_bytes"] = fused.Before,
            ["peak_rss_fused_bytes"] = fused.Peak, ["peak_ratio_fused"] = Math.Round(fused.Ratio(activations), 3),
        };
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(report));
            return 0;
        }
        var ci = CultureInfo.InvariantCulture;
        static string Mb(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB";
        Console.Out.WriteLine($"{name}: peak working set of the forward pass, {threads} threads, batch {batch} (process before loading: {Mb(baseline)})");
        Console.Out.WriteLine($"  activations (every layer's output and the input): {Mb(activations)}");
        foreach (var (label, m) in new[] { ("unfused", unfused), ("fused", fused) })
            Console.Out.WriteLine(string.Create(ci,
                $"  {label,-8} weights {Mb(m.Weights),11}, before {Mb(m.Before),11}, peak {Mb(m.Peak),11} = {m.Ratio(activations):F2} x (weights + activations)"));
        return 0;
    }

    /// <summary>One measurement: state bytes of the model, resident bytes before the passes, and the peak during them.</summary>
    private readonly record struct Sample(long Weights, long Before, long Peak)
    {
        public double Ratio(long activations) => (double)Peak / (Weights + activations);
    }

    // The unfused model lives only in this frame (not inlined), so it is collectable before the fused measurement:
    // a reference left in the caller's frame kept it and its packed weights resident (100 MB for resnet50).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (Sample Unfused, long Activations, Module Fused, Tensor Input) MeasureUnfused(string name, int batch, ForwardOptions options)
    {
        var z = ModelZoo.Create(name, seed: 1, randomizeBatchNorm: true);
        var x = BenchCommand.BatchProbe(z, batch);
        var activations = ActivationBytes(z.Model, x, options);
        var unfused = Measure(z.Model, x, options);
        return (unfused, activations, Fuser.FuseModules(z.Model, z.FuseGroups.Select(g => (IEnumerable<string>)g)), x);
    }

    private static Sample Measure(Module model, Tensor x, ForwardOptions options)
    {
        Compact();
        var before = Kb("VmRSS");
        File.WriteAllText(ClearRefs, "5");   // resets VmHWM to the current resident size
        Forward.Run(model, x, options);
        Forward.Run(model, x, options);
        return new Sample(StateBytes(model), before, Kb("VmHWM"));
    }

    /// <summary>The input plus the output of every layer call of one pass, counted by a forward hook on every leaf
    /// (on a copy: the hooks never reach the measured model).</summary>
    private static long ActivationBytes(Module model, Tensor x, ForwardOptions options)
    {
        long total = (long)x.Count * sizeof(float);
        var count = new ForwardHook("count output bytes", (_, _, y) =>
        {
            Interlocked.Add(ref total, (long)y.Count * sizeof(float));
            return null;
        });
        var hooked = ModulePath.ReplaceAll(model, model.NamedModules()
            .Where(kv => kv.Key.Length > 0 && kv.Value.Children.Count == 0)
            .Select(kv => KeyValuePair.Create(kv.Key, kv.Value.AddHook(count))));
        Forward.Run(hooked, x, options);
        return total;
    }

    private static long StateBytes(Module model)
        => model.StateDict().Sum(kv => kv.Value.ByteCount);

    private static void Compact()
    {
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>A <c>kB</c> field of <c>/proc/self/status</c>, in bytes.</summary>
    private static long Kb(string field)
    {
        foreach (var line in File.ReadLines(Status))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        throw new InvalidOperationException($"{Status} has no {field}");
    }
}
