using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Fusion.Dsl;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion bench</c>: fuses a zoo network with torchvision's groups and measures fuse time, bytes allocated by fusion,
/// and forward time unfused and fused (medians after warm-up). <c>--json</c> prints one object with the keys
/// <c>fuse_ms</c>, <c>forward_unfused_ms</c>, <c>forward_fused_ms</c>, <c>fuse_alloc_bytes</c>, <c>threads</c>, <c>groups</c>,
/// and beside them <c>folded_bytes</c> (the bytes the tensors fusion creates hold once computed: folded weights are
/// computed on first read, so <c>fuse_alloc_bytes</c> counts only the new biases and modules) and
/// <c>fuse_then_forward_ms</c> (a fresh fusion plus the first forward pass through it, which packs its weights). The timed
/// forward passes run in one <see cref="EngineSession"/> per model with <c>--threads</c> cores.
/// <c>--batch N</c> runs the forward passes on <c>N</c> images at once: the <c>forward_*_ms</c> keys are then milliseconds
/// per batch, and <c>batch</c>, <c>images_per_s</c> (fused) and <c>images_per_s_unfused</c> give the throughput.
/// <c>--memory</c> measures peak working sets instead (<see cref="BenchMemory"/>), of a zoo network or a model file alike;
/// <c>--quantized</c> times an int8 model file beside its float model (<see cref="BenchQuantized"/>).
/// Both reports carry <c>isa</c>, the instruction set whose paths the engine's kernels took (<see cref="InstructionSets"/>); the
/// timings also <c>avx512_present</c> and <c>runtime</c> (the .NET version), which a per-CPU table names beside them.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var file = new Argument<string?>("MODEL") { Description = "a model file (any the other commands read), fused with the groups discovery finds", Arity = ArgumentArity.ZeroOrOne };
        var model = new Option<string?>("--model") { Description = "a zoo network instead of a file, fused with torchvision's groups: " + string.Join(", ", ModelZoo.Names) };
        model.AcceptOnlyFromAmong([.. ModelZoo.Names]);
        var inputShape = new Option<string?>("--input-shape") { Description = "a model file's input shape for one image, e.g. 1,3,224,224 (default: the file's own)" };
        var threads = new Option<int>("--threads") { Description = "threads of the forward pass (default: the core count)", DefaultValueFactory = _ => Environment.ProcessorCount };
        threads.Validators.Add(Validate.Positive);
        var runs = new Option<int>("--runs") { Description = "timed runs per measurement after warm-up; the median is reported", DefaultValueFactory = _ => 5 };
        runs.Validators.Add(Validate.Positive);
        var batch = new Option<int>("--batch") { Description = $"images per forward pass (1: single-image latency; more: throughput in images per second, up to {MaxBatch})", DefaultValueFactory = _ => 1 };
        batch.Validators.Add(Validate.UpTo(MaxBatch, "a bigger batch adds no throughput and its activations would take gigabytes"));
        var json = new Option<bool>("--json") { Description = "print one JSON object (the keys of tools/bench/compare.py)" };
        var memory = new Option<bool>("--memory") { Description = "measure the peak working set of the forward passes instead of times" };
        var quantized = new Option<bool>("--quantized") { Description = "time the int8 model MODEL (written by fusion quantize) beside its float model" };
        var c = new Command("bench", "time fusion and forward passes (medians after warm-up), or the peak working set with --memory")
            { file, model, inputShape, threads, runs, batch, json, memory, quantized };
        c.SetAction(r =>
        {
            var (path, zoo) = (r.GetValue(file), r.GetValue(model));
            if (r.GetValue(quantized))
            {
                if (path is null || zoo is not null || r.GetValue(memory))
                    throw new UsageException("bench --quantized takes a model file written by fusion quantize (not --model, not with --memory)");
                return BenchQuantized.Run(path, r.GetValue(inputShape), r.GetValue(batch), r.GetValue(threads), r.GetValue(runs), r.GetValue(json));
            }
            if ((path is null) == (zoo is null)) throw new UsageException("give a model file or --model NAME (one of " + string.Join(", ", ModelZoo.Names) + ")");
            // A loader rather than the subject: --memory builds it in a frame of its own, so the unfused model can be
            // collected before the fused one is measured.
            Subject Load() => zoo is not null ? Zoo(zoo, r.GetValue(batch)) : FileSubject(path!, r.GetValue(inputShape), r.GetValue(batch));
            return r.GetValue(memory) ? BenchMemory.Run(Load, r.GetValue(threads), r.GetValue(json))
                : Run(Load(), r.GetValue(threads), r.GetValue(runs), r.GetValue(json));
        });
        return c;
    }

    /// <summary>What is measured: a model, the groups fused, and an input batch of <paramref name="Batch"/> images.</summary>
    /// <param name="Name">The zoo network's name or the model file's name, as the report gives it.</param>
    /// <param name="Model">The unfused model.</param>
    /// <param name="Groups">The groups fused: torchvision's for a zoo network, discovery's for a file (possibly none).</param>
    /// <param name="Input">The probe input, its first dimension <paramref name="Batch"/>.</param>
    /// <param name="Batch">Images per forward pass.</param>
    internal sealed record Subject(string Name, Module Model, IReadOnlyList<IEnumerable<string>> Groups, Tensor Input, int Batch)
    {
        /// <summary>A fresh fusion of <see cref="Model"/>; a model with no fusable group (convnext, vit) as it is, since
        /// fusing nothing leaves it unchanged (and fuse_modules refuses an empty list).</summary>
        public Module Fuse() => Groups.Count == 0 ? Model : Fuser.FuseModules(Model, Groups);
    }

    private static Subject Zoo(string name, int batch)
    {
        var z = ModelZoo.Create(name, seed: 1, randomizeBatchNorm: true);
        return new Subject(name, z.Model, [.. z.FuseGroups.Select(g => (IEnumerable<string>)g)], BatchProbe(z, batch), batch);
    }

    /// <summary>A model file, its discovered groups and a probe batch of its input shape (or <paramref name="inputShape"/>).</summary>
    internal static Subject FileSubject(string path, string? inputShape, int batch)
    {
        var src = ModelSource.From(path, null, 1, inputShape, null);
        if (src.InputShape.IsEmpty) throw new UsageException($"{path} records no input shape: give --input-shape, e.g. 1,3,224,224");
        var shape = src.InputShape.ToArray();
        shape[0] = batch;
        var groups = Fuser.FindFusableGroups(src.Model).Select(g => (IEnumerable<string>)g).ToList();
        return new Subject(Path.GetFileName(Path.TrimEndingDirectorySeparator(path)), src.Model, groups, ModelSource.Probe(shape, 1), batch);
    }

    /// <summary>
    /// The largest <c>--batch</c>: throughput stops growing once a batch keeps both cores busy (a few images), while the
    /// largest activation grows with it (mobilenet_v2's 96x112x112 expansion is 4.8 MB an image, 308 MB at 64), and past
    /// about 220 images that single tensor would pass the engine's element limit.
    /// </summary>
    internal const int MaxBatch = 64;

    /// <summary>The zoo network's probe input with <paramref name="batch"/> images: its own shape with the batch replaced.</summary>
    internal static Tensor BatchProbe(ZooModel z, int batch)
    {
        var shape = z.InputShape;
        shape[0] = batch;
        return ModelSource.Probe(shape, 1);
    }

    private static int Run(Subject subject, int threads, int runs, bool json)
    {
        void Progress(string s) { if (!json) Console.Error.WriteLine(s); }

        var (name, model, groups, x, batch) = (subject.Name, subject.Model, subject.Groups, subject.Input, subject.Batch);
        var options = new EngineSessionOptions { Threads = threads };

        // Each timed block starts after a full collection: garbage left by an earlier block (fusion makes 94 MB of it per
        // run for resnet50) otherwise sets off background collections on the other core during the next block's timings.
        // Fusion is timed first: right after forward passes, a series of 25 fusions of resnet50 ran up to five times
        // slower for a second or two with the same number of page faults (cause not pinned down; the runtime was still
        // settling after the passes).
        var fused = subject.Fuse();
        Settle();
        Progress($"fusing {name} ({groups.Count} groups), {runs} runs after warm-up...");
        var fuseMs = Timing.MedianMs(() => subject.Fuse(), runs, warmup: 2);
        Settle();
        // Fusion as a user meets it: a fresh fusion, then the first pass through its result. Folded weights are computed
        // lazily and packed for the GEMM by that first pass, straight from the originals and the BatchNorm scales, so the
        // work fuse_ms leaves out shows here (the first pass through any model packs its weights). In-process after one
        // warm-up, as tools/bench/pytorch_bench.py times PyTorch's side: with tiering off, the warm-up has compiled every
        // method, so no JIT time is in it (a fresh process compiles about 150 methods during its first pass).
        Progress($"fuse then first forward, {runs} runs after warm-up...");
        // Through Forward.Run, whose process-wide buffer pool stays warm from run to run: the number is fusion's deferred
        // work (folding while packing), not fresh buffers. A fresh session per run faults its buffers in anew, which cost
        // mobilenet_v2 (4.8 MB expansions) about 10 ms more here (medians of three runs: 46.5 against 33.8 ms).
        var fuseThenForwardMs = Timing.MedianMs(() => Forward.Run(subject.Fuse(), x, new ForwardOptions { Threads = threads }),
            runs, warmup: 1);
        Settle();
        // Counted for the whole process: folding large weights runs on both cores. Nothing else runs meanwhile.
        var before = GC.GetTotalAllocatedBytes(precise: true);
        subject.Fuse();
        var fuseAlloc = GC.GetTotalAllocatedBytes(precise: true) - before;
        var originals = new HashSet<Tensor>(model.StateDict().Select(kv => kv.Value), ReferenceEqualityComparer.Instance);
        var folded = fused.StateDict().Select(kv => kv.Value).Where(t => !originals.Contains(t)).ToArray();
        var foldedBytes = folded.Sum(t => t.ByteCount);

        Settle();
        Progress($"forward unfused, {runs} runs after warm-up...");
        using var unfusedSession = EngineSession.Open(model, options);
        var unfusedMs = Timing.MedianMs(() => unfusedSession.Run(x), runs, warmup: 3);
        Settle();
        Progress($"forward fused, {runs} runs after warm-up...");
        using var fusedSession = EngineSession.Open(fused, options);
        var fusedMs = Timing.MedianMs(() => fusedSession.Run(x), runs, warmup: 3);
        var diff = fusedSession.Run(x).MaxAbsDiff(unfusedSession.Run(x));
        double ImagesPerS(double ms) => batch * 1000.0 / ms;

        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = name, ["fuse_ms"] = Math.Round(fuseMs, 3), ["forward_unfused_ms"] = Math.Round(unfusedMs, 3),
                ["forward_fused_ms"] = Math.Round(fusedMs, 3), ["fuse_alloc_bytes"] = fuseAlloc, ["threads"] = threads,
                ["groups"] = groups.Count, ["runs"] = runs, ["max_abs_diff"] = diff,
                ["folded_bytes"] = foldedBytes, ["fuse_then_forward_ms"] = Math.Round(fuseThenForwardMs, 3),
                ["batch"] = batch, ["images_per_s"] = Math.Round(ImagesPerS(fusedMs), 2),
                ["images_per_s_unfused"] = Math.Round(ImagesPerS(unfusedMs), 2),
                ["isa"] = InstructionSets.Float, ["avx512_present"] = InstructionSets.Avx512Present,
                ["runtime"] = RuntimeInformation.FrameworkDescription,
            }));
        }
        else
        {
            var ci = CultureInfo.InvariantCulture;
            Console.Out.WriteLine(string.Create(ci, $"{name}: {groups.Count} groups, {threads} threads, batch {batch}, medians of {runs} runs, {InstructionSets.Float} kernels"));
            Console.Out.WriteLine(string.Create(ci, $"  fuse            {fuseMs,10:F2} ms  ({fuseAlloc:N0} bytes allocated; the folded tensors hold {foldedBytes:N0})"));
            Console.Out.WriteLine(string.Create(ci, $"  fuse + first forward {fuseThenForwardMs,5:F2} ms  (a fresh fusion and the first pass through it, which packs its weights)"));
            Console.Out.WriteLine(string.Create(ci, $"  forward unfused {unfusedMs,10:F2} ms"));
            Console.Out.WriteLine(string.Create(ci, $"  forward fused   {fusedMs,10:F2} ms  (speed-up {unfusedMs / fusedMs:F2}x, max |diff| {diff:G3})"));
            if (batch > 1)
                Console.Out.WriteLine(string.Create(ci,
                    $"  throughput      {ImagesPerS(fusedMs),10:F1} images/s fused, {ImagesPerS(unfusedMs):F1} unfused ({fusedMs / batch:F2} ms an image in batches of {batch})"));
        }
        return 0;
    }

    /// <summary>A full, blocking collection, so that no collection of earlier garbage runs during the next timings.</summary>
    private static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
