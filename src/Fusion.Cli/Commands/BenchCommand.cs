using System.Globalization;
using System.Text.Json;
using Fusion.Dsl;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion bench</c>: fuses a zoo network with torchvision's groups and measures fuse time, bytes allocated by fusion,
/// and forward time unfused and fused (medians after warm-up). <c>--json</c> prints one object with the keys
/// <c>fuse_ms</c>, <c>forward_unfused_ms</c>, <c>forward_fused_ms</c>, <c>fuse_alloc_bytes</c>, <c>threads</c>, <c>groups</c>,
/// and beside them <c>folded_bytes</c> (the tensors fusion creates) and <c>copy_floor_ms</c> (allocating those bytes afresh
/// and copying into them: the memory traffic any out-of-place fold must pay). <c>--memory</c> measures peak working sets
/// instead (<see cref="BenchMemory"/>).
/// </summary>
internal static class BenchCommand
{
    public static int Run(string[] args)
    {
        var a = CliArgs.Parse(args, ["model", "threads", "runs"], ["json", "memory"]);
        var name = a.Option("model") ?? throw new UsageException("bench needs --model NAME (" + string.Join(", ", ModelZoo.Names) + ")");
        if (!ModelZoo.Names.Contains(name)) throw new UsageException($"unknown model '{name}'; the zoo has {string.Join(", ", ModelZoo.Names)}");
        var threads = a.IntOption("threads", Environment.ProcessorCount);
        var runs = Math.Max(5, a.IntOption("runs", 5));
        var json = a.Flag("json");
        if (a.Flag("memory")) return BenchMemory.Run(name, threads, json);
        void Progress(string s) { if (!json) Console.Error.WriteLine(s); }

        var z = ModelZoo.Create(name, seed: 1, randomizeBatchNorm: true);
        var x = ModelSource.Probe(z.InputShape, 1);
        var options = new ForwardOptions { Threads = threads };
        var groups = z.FuseGroups.Select(g => (IEnumerable<string>)g).ToList();

        Progress($"fusing {name} ({groups.Count} groups), {runs} runs after warm-up...");
        var fused = Fuser.FuseModules(z.Model, groups);
        var fuseMs = Timing.MedianMs(() => Fuser.FuseModules(z.Model, groups), runs, warmup: 2);
        // Counted for the whole process: folding large weights runs on both cores. Nothing else runs meanwhile.
        var before = GC.GetTotalAllocatedBytes(precise: true);
        Fuser.FuseModules(z.Model, groups);
        var fuseAlloc = GC.GetTotalAllocatedBytes(precise: true) - before;
        var originals = new HashSet<Tensor>(z.Model.StateDict().Select(kv => kv.Value), ReferenceEqualityComparer.Instance);
        var folded = fused.StateDict().Select(kv => kv.Value).Where(t => !originals.Contains(t)).ToArray();
        var foldedBytes = folded.Sum(t => (long)t.Count * (t.DType == DType.Float32 ? sizeof(float) : sizeof(long)));
        var floorMs = Timing.MedianMs(() => CopyFresh(folded), runs, warmup: 2);

        Progress($"forward unfused, {runs} runs after warm-up...");
        var unfusedMs = Timing.MedianMs(() => Forward.Run(z.Model, x, options), runs, warmup: 2);
        Progress($"forward fused, {runs} runs after warm-up...");
        var fusedMs = Timing.MedianMs(() => Forward.Run(fused, x, options), runs, warmup: 2);
        var diff = Forward.Run(fused, x, options).MaxAbsDiff(Forward.Run(z.Model, x, options));

        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = name, ["fuse_ms"] = Math.Round(fuseMs, 3), ["forward_unfused_ms"] = Math.Round(unfusedMs, 3),
                ["forward_fused_ms"] = Math.Round(fusedMs, 3), ["fuse_alloc_bytes"] = fuseAlloc, ["threads"] = threads,
                ["groups"] = groups.Count, ["runs"] = runs, ["max_abs_diff"] = diff,
                ["folded_bytes"] = foldedBytes, ["copy_floor_ms"] = Math.Round(floorMs, 3),
            }));
        }
        else
        {
            var ci = CultureInfo.InvariantCulture;
            Console.Out.WriteLine(string.Create(ci, $"{name}: {groups.Count} groups, {threads} threads, medians of {runs} runs"));
            Console.Out.WriteLine(string.Create(ci, $"  fuse            {fuseMs,10:F2} ms  ({fuseAlloc:N0} bytes allocated; the folded tensors hold {foldedBytes:N0})"));
            Console.Out.WriteLine(string.Create(ci, $"  copy floor      {floorMs,10:F2} ms  (allocating and filling the folded tensors' bytes)"));
            Console.Out.WriteLine(string.Create(ci, $"  forward unfused {unfusedMs,10:F2} ms"));
            Console.Out.WriteLine(string.Create(ci, $"  forward fused   {fusedMs,10:F2} ms  (speed-up {unfusedMs / fusedMs:F2}x, max |diff| {diff:G3})"));
        }
        return 0;
    }

    /// <summary>Allocates each tensor's bytes afresh and copies the tensor into them, splitting large ones over two
    /// threads as folding does: the cost of producing the folded tensors without computing anything.</summary>
    private static void CopyFresh(Tensor[] tensors)
    {
        foreach (var t in tensors)
        {
            if (t.DType != DType.Float32) { GC.KeepAlive(t.Int64.ToArray()); continue; }
            var n = t.Count;
            var target = GC.AllocateUninitializedArray<float>(n);
            if (n < 1 << 18) { t.Float32.CopyTo(target); continue; }
            Parallel.For(0, 2, h =>
            {
                var start = h * (n / 2);
                var length = h == 0 ? n / 2 : n - n / 2;
                t.Float32.Slice(start, length).CopyTo(target.AsSpan(start, length));
            });
        }
    }
}
