using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion bench --memory</c>: the peak working set (resident memory) of the whole process while it runs a model's
/// forward pass, unfused and then fused, beside the size of the weights and of the activations; the model is a zoo network
/// fused with torchvision's groups or a model file fused with the groups discovery finds (one that has none is measured
/// twice as it is). Linux only: it reads <c>VmRSS</c>/<c>VmHWM</c> from <c>/proc/self/status</c> and resets the peak
/// through <c>/proc/self/clear_refs</c>, so each peak covers one measurement (two passes in a fresh
/// <see cref="EngineSession"/>: the first packs the weights for the GEMM kernels, the second is the steady state; the
/// session is disposed after it, so nothing of it is left for the next).
/// </summary>
/// <remarks>
/// <para>
/// The ratio's denominator is weights plus activations. Weights are the measured model's state tensors (a fused model's
/// folded weights counted at their full size, though they are computed only if read). Activations are the outputs of every
/// leaf layer call in one pass of the <em>unfused</em> model plus the input, counted for both ratios: what an engine that
/// kept every intermediate of the unfused network would hold. That is generous on two counts, so a ratio under 2 is not
/// flattered by a small denominator: an engine needs only the intermediates alive at one time (the evaluator releases the
/// others), and the fused model has no BatchNorm or activation outputs of its own (a fused group writes one tensor where
/// the unfused model writes three).
/// </para>
/// <para>
/// The numerator is the whole process: the .NET runtime (<c>baseline_rss_bytes</c>, before anything is loaded, plus the
/// compiled code that grows after it), the model's weights, the engine's packed forms of them (GEMM panels, Winograd's
/// transformed 3x3 weights, 16/9 the size; <c>packed_weight_bytes_*</c>), its pooled intermediates
/// (<c>pooled_buffer_bytes_*</c>) and the kernels' pooled scratch. <c>managed_bytes_*</c> is the live managed heap after the
/// passes (compacted); the peak less it is what lives outside the managed heap, mostly the runtime. The other model has been
/// dropped and the heap compacted before each measurement.
/// </para>
/// </remarks>
internal static class BenchMemory
{
    private const string Status = "/proc/self/status";
    private const string ClearRefs = "/proc/self/clear_refs";

    /// <summary>Measures the model <paramref name="load"/> builds and prints the report (one JSON object with
    /// <paramref name="json"/>); returns the exit code.</summary>
    /// <param name="load">Builds the model, its groups and its input; called once, inside a frame the fused measurement
    /// does not share, so nothing of the unfused model stays reachable during it.</param>
    /// <param name="threads">Threads of the forward passes.</param>
    /// <param name="json">Print one JSON object instead of text.</param>
    public static int Run(Func<BenchCommand.Subject> load, int threads, bool json)
    {
        if (!File.Exists(Status) || !File.Exists(ClearRefs))
            throw new UsageException("bench --memory reads the peak working set from Linux's /proc/self/status and resets it " +
                                     "through /proc/self/clear_refs, which this system does not have");
        var baseline = Kb("VmRSS");
        var options = new EngineSessionOptions { Threads = threads };
        var (unfused, activations, fusedModel, x, name) = MeasureUnfused(load, options);
        var fused = Measure(fusedModel, x, options);
        var batch = x.Shape[0];
        var report = new Dictionary<string, object>
        {
            ["model"] = name, ["threads"] = threads, ["batch"] = batch, ["isa"] = InstructionSets.Float, ["activation_bytes"] = activations, ["baseline_rss_bytes"] = baseline,
            ["weights_unfused_bytes"] = unfused.Weights, ["rss_before_unfused_bytes"] = unfused.Before,
            ["peak_rss_unfused_bytes"] = unfused.Peak, ["peak_ratio_unfused"] = Math.Round(unfused.Ratio(activations), 3),
            ["packed_weight_bytes_unfused"] = unfused.Packed, ["pooled_buffer_bytes_unfused"] = unfused.Pooled,
            ["managed_bytes_unfused"] = unfused.Managed,
            ["weights_fused_bytes"] = fused.Weights, ["rss_before_fused_bytes"] = fused.Before,
            ["peak_rss_fused_bytes"] = fused.Peak, ["peak_ratio_fused"] = Math.Round(fused.Ratio(activations), 3),
            ["packed_weight_bytes_fused"] = fused.Packed, ["pooled_buffer_bytes_fused"] = fused.Pooled,
            ["managed_bytes_fused"] = fused.Managed,
        };
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(report));
            return 0;
        }
        var ci = CultureInfo.InvariantCulture;
        static string Mb(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) + " MiB";
        Console.Out.WriteLine($"{name}: peak working set of the forward pass, {threads} threads, batch {batch}, {InstructionSets.Float} kernels (process before loading: {Mb(baseline)})");
        Console.Out.WriteLine($"  activations (every layer's output and the input): {Mb(activations)}");
        foreach (var (label, m) in new[] { ("unfused", unfused), ("fused", fused) })
        {
            Console.Out.WriteLine(string.Create(ci,
                $"  {label,-8} weights {Mb(m.Weights),11}, before {Mb(m.Before),11}, peak {Mb(m.Peak),11} = {m.Ratio(activations):F2} x (weights + activations)"));
            Console.Out.WriteLine(string.Create(ci,
                $"           of it: managed heap {Mb(m.Managed)} (packed weights {Mb(m.Packed)}, pooled intermediates {Mb(m.Pooled)}), outside it {Mb(m.Peak - m.Managed)}"));
        }
        return 0;
    }

    /// <summary>One measurement: state bytes of the model, resident bytes before the passes, the peak during them, and after
    /// them the engine's packs of the model's weights, its pooled intermediates and the live managed heap.</summary>
    private readonly record struct Sample(long Weights, long Before, long Peak, long Packed, long Pooled, long Managed)
    {
        public double Ratio(long activations) => (double)Peak / (Weights + activations);
    }

    // The unfused model lives only in this frame (not inlined), so it is collectable before the fused measurement:
    // a reference left in the caller's frame kept it and its packed weights resident (100 MB for resnet50).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (Sample Unfused, long Activations, Module Fused, Tensor Input, string Name) MeasureUnfused(Func<BenchCommand.Subject> load, EngineSessionOptions options)
    {
        var subject = load();
        var x = subject.Input;
        // Measured before the activations are counted: that hooked pass packs the weights in a session of its own, and the
        // memory it frees stays resident, so a measurement after it packed again into fresh pages (resnet18's unfused peak
        // was 227 MB against 171 MB this way round).
        var unfused = Measure(subject.Model, x, options);
        var activations = ActivationBytes(subject.Model, x, options);
        return (unfused, activations, subject.Fuse(), x, subject.Name);
    }

    private static Sample Measure(Module model, Tensor x, EngineSessionOptions options)
    {
        Compact();
        var before = Kb("VmRSS");
        File.WriteAllText(ClearRefs, "5");   // resets VmHWM to the current resident size
        // Disposed when this returns: the live heap below is read while the session still holds its packs and buffers.
        using var session = EngineSession.Open(model, options);
        session.Run(x);
        session.Run(x);
        var peak = Kb("VmHWM");
        // After the peak is read: the collection changes what is resident now, not the peak.
        Compact();
        return new Sample(StateBytes(model), before, peak, session.PackedWeightBytes, session.PooledBufferBytes, GC.GetTotalMemory(forceFullCollection: false));
    }

    /// <summary>The input plus the output of every layer call of one pass, counted by a forward hook on every leaf
    /// (on a copy: the hooks never reach the measured model). In a session of its own, disposed at once: the copy shares
    /// the model's weights, and packs of them left in Forward.Run's process-wide store would be resident during the
    /// measurements.</summary>
    private static long ActivationBytes(Module model, Tensor x, EngineSessionOptions options)
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
        using (var session = EngineSession.Open(hooked, options)) session.Run(x);
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
