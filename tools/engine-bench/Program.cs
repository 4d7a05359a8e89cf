// Forward-engine benchmarks. Usage (Release; every timing is the median of 5 runs after warm-up):
//   dotnet run -c Release --project tools/engine-bench -- conv [threads]      3x3 conv 64->64 at 1x64x56x56 (GFLOP/s)
//   dotnet run -c Release --project tools/engine-bench -- net NAME [threads]  a zoo network (resnet18, resnet50, mobilenet_v2)
//                                                                     at 1x3x224x224, unfused vs fused by Fuser.FuseModules
//   dotnet run -c Release --project tools/engine-bench -- profile NAME [threads]  time per module type, through hooks (NAME: a
//                                                                     zoo network, or a model file/folder fused as fusion auto does)
//                                                                     (BENCH_DETAIL=1: per conv shape; hooks turn buffer recycling off)
//   BENCH_NORECYCLE=1 with `net`: a no-op hook on both models turns intermediate buffer recycling off, for comparison
//   dotnet run -c Release --project tools/engine-bench -- layers [threads]    resnet18/mobilenet conv shapes (GFLOP/s each)
//   dotnet run -c Release --project tools/engine-bench -- linear [threads]    convnext_tiny's Linear shapes (GFLOP/s each, one session)
//   dotnet run -c Release --project tools/engine-bench -- gelu [threads]      GELU (erf form) on convnext_tiny's four stage sizes
//                                                                     (ns per element each, one session)
//   dotnet run -c Release --project tools/engine-bench -- softmax [threads]   softmax over the last axis of attention scores (vit_b_16's
//                                                                     [12, 197, 197], swin_t's [64, 3, 49, 49]; ns per element)
//   dotnet run -c Release --project tools/engine-bench -- layers50 [threads]  resnet50's bottleneck conv shapes (GFLOP/s each)
//   dotnet run -c Release --project tools/engine-bench -- fuse NAME [threads]  fusion's parts (medians: whole fusion, without
//                                                                     the dataflow check, the dataflow analysis alone) and a
//                                                                     series of 25 fusions (ms / page faults / gen2 collections);
//                                                                     BENCH_AFTER_FORWARD=1 runs 10 forward passes first;
//                                                                     BENCH_SECONDS=S loops fusions S seconds for a profiler
//   dotnet run -c Release --project tools/engine-bench -- first NAME [threads]  a fresh fusion plus its first forward pass, in a
//                                                                     loop of BENCH_SECONDS (20) for a profiler: median, page
//                                                                     faults and gen2 collections per run
//   dotnet run -c Release --project tools/engine-bench -- file PATH [threads]  a model file (fusion-model/1 JSON) on a random
//                                                                     input of its shape: wall and CPU ms per forward pass
//   dotnet run -c Release --project tools/engine-bench -- joins [threads]    resnet18/50's residual joins: conv, separate add and
//                                                                     ReLU against the add and ReLU in the conv's epilogue
//   dotnet run -c Release --project tools/engine-bench -- int8 [threads]     the int8 GEMM on resnet50's 1x1 shapes against the
//                                                                     float 1x1 convolution of the same shape (GOP/s each;
//                                                                     7-bit activations, then the full byte range)
using System.Diagnostics;
using Fusion.Dsl;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

var mode = args.Length > 0 ? args[0] : "conv";
var netName = mode is "net" or "profile" or "fuse" or "file" or "first" ? (args.Length > 1 ? args[1] : "resnet18") : "";
var rest = mode is "net" or "profile" or "fuse" or "file" or "first" ? args.Skip(2).ToArray() : args.Skip(1).ToArray();
var threads = rest.Length > 0 ? int.Parse(rest[0], System.Globalization.CultureInfo.InvariantCulture) : Environment.ProcessorCount;
var options = new ForwardOptions { Threads = threads };
Console.WriteLine($"{mode}, threads={threads}, cores={Environment.ProcessorCount}");

switch (mode)
{
    case "conv":
        ConvBench(64, 64, 56, 3, 1, 1, 1);
        break;
    case "layers":
        // (in, out, size, kernel, stride, padding, groups): resnet18's and mobilenet's characteristic convolutions.
        ConvShapes([(3, 64, 224, 7, 2, 3, 1), (64, 64, 56, 3, 1, 1, 1), (64, 128, 56, 3, 2, 1, 1), (64, 128, 56, 1, 2, 0, 1),
                    (128, 128, 28, 3, 1, 1, 1), (256, 256, 14, 3, 1, 1, 1), (512, 512, 7, 3, 1, 1, 1), (96, 96, 56, 3, 1, 1, 96),
                    (96, 96, 112, 3, 2, 1, 96), (576, 576, 14, 3, 1, 1, 576), (960, 960, 7, 3, 1, 1, 960)]);
        break;
    case "layers50":
        // resnet50's bottleneck shapes: 1x1 reductions and expansions and the 3x3 in between, at 56, 28, 14 and 7.
        ConvShapes([(64, 256, 56, 1, 1, 0, 1), (256, 64, 56, 1, 1, 0, 1), (128, 128, 28, 3, 1, 1, 1), (512, 128, 28, 1, 1, 0, 1),
                    (128, 512, 28, 1, 1, 0, 1), (256, 256, 14, 3, 1, 1, 1), (1024, 256, 14, 1, 1, 0, 1), (256, 1024, 14, 1, 1, 0, 1),
                    (512, 512, 7, 3, 1, 1, 1), (2048, 512, 7, 1, 1, 0, 1), (512, 2048, 7, 1, 1, 0, 1)]);
        break;
    case "fuse":
    {
        var z = ModelZoo.Create(netName, seed: 1, randomizeBatchNorm: true);
        var groups = z.FuseGroups.Select(g => (IEnumerable<string>)g).ToList();
        if (Environment.GetEnvironmentVariable("BENCH_AFTER_FORWARD") == "1")
        {
            var x = Random(new Random(1), z.InputShape);
            var f = Fuser.FuseModules(z.Model, groups);
            for (var i = 0; i < 10; i++) { Forward.Run(z.Model, x, options); Forward.Run(f, x, options); }
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var series = new List<string>();
        for (var i = 0; i < 25; i++)
        {
            var f0 = MinorFaults();
            var g0 = GC.CollectionCount(2);
            var sw = Stopwatch.StartNew();
            Fuser.FuseModules(z.Model, groups);
            series.Add($"{sw.Elapsed.TotalMilliseconds:F0}/{MinorFaults() - f0}/{GC.CollectionCount(2) - g0}");
        }
        Console.WriteLine($"series of 25 fusions (ms/page faults/gen2): {string.Join(" ", series)}");
        if (Environment.GetEnvironmentVariable("BENCH_SECONDS") is { } loopFor)
        {
            // A loop of fusions for a profiler.
            var until = Stopwatch.StartNew();
            var count = 0;
            while (until.Elapsed.TotalSeconds < double.Parse(loopFor, System.Globalization.CultureInfo.InvariantCulture)) { Fuser.FuseModules(z.Model, groups); count++; }
            Console.WriteLine($"{count} fusions in {until.Elapsed.TotalSeconds:F1} s");
        }
        var noCheck = new FuseOptions { AllowUnsafeDataflow = true };
        Console.WriteLine($"fusion {MedianMs(() => Fuser.FuseModules(z.Model, groups)):F2} ms, {Allocated(() => Fuser.FuseModules(z.Model, groups)) / 1e6:F1} MB; " +
                          $"without the dataflow check {MedianMs(() => Fuser.FuseModules(z.Model, groups, noCheck)):F2} ms; " +
                          $"dataflow analysis {MedianMs(() => Fusion.Dsl.Analysis.Dataflow.Of(z.Model)):F3} ms, {Allocated(() => Fusion.Dsl.Analysis.Dataflow.Of(z.Model)) / 1e6:F2} MB " +
                          "(medians of 9 after 2 warm-ups; allocations process-wide)");
        break;
    }
    case "net":
    {
        var (model, fusedNet, x) = Zoo(netName);
        var tu = Median(() => Forward.Run(model, x, options));
        var tf = Median(() => Forward.Run(fusedNet, x, options));
        var flt0 = MinorFaults();
        for (var i = 0; i < 20; i++) Forward.Run(fusedNet, x, options);
        var faults = (MinorFaults() - flt0) / 20;
        Console.WriteLine($"{netName} {Tensor.ShapeString(x.Shape)}: unfused {tu:F2} ms, fused {tf:F2} ms ({tu / tf:F2}x); fused pass: {faults} page faults");
        break;
    }
    case "first":
    {
        // Fusion as a user meets it, in a loop for a profiler: a fresh fusion of a zoo network, then the first pass
        // through it (folding and packing every weight), BENCH_SECONDS long (default 20). Prints the median, page faults
        // and gen2 collections per iteration.
        var z = ModelZoo.Create(netName, seed: 1, randomizeBatchNorm: true);
        var groups = z.FuseGroups.Select(g => (IEnumerable<string>)g).ToList();
        var x = Random(new Random(1), z.InputShape);
        Forward.Run(Fuser.FuseModules(z.Model, groups), x, options);
        var seconds = double.Parse(Environment.GetEnvironmentVariable("BENCH_SECONDS") ?? "20", System.Globalization.CultureInfo.InvariantCulture);
        var times = new List<double>();
        var (f0, g0) = (MinorFaults(), GC.CollectionCount(2));
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < seconds)
        {
            var sw = Stopwatch.StartNew();
            Forward.Run(Fuser.FuseModules(z.Model, groups), x, options);
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        var n = times.Count;
        Console.WriteLine($"{netName}: fuse + first forward median {times[n / 2]:F1} ms over {n} runs (min {times[0]:F1}); " +
                          $"per run {(MinorFaults() - f0) / n} page faults, {(double)(GC.CollectionCount(2) - g0) / n:F2} gen2");
        var steady = Fuser.FuseModules(z.Model, groups);
        Console.WriteLine($"steady forward (same fused model again) {Median(() => Forward.Run(steady, x, options)):F1} ms");
        break;
    }
    case "linear":
        // convnext_tiny's Linear layers at 224x224 (channels-last tokens: [1, H, W, C]), in one session each.
        foreach (var (tokens, inF, outF) in new[] { (56, 96, 384), (56, 384, 96), (28, 192, 768), (28, 768, 192),
                                                    (14, 384, 1536), (14, 1536, 384), (7, 768, 3072), (7, 3072, 768) })
            LinearBench(tokens, inF, outF);
        break;
    case "gelu":
        // convnext_tiny's GELUs at 224x224: [1, H, W, 4C] after each block's first Linear.
        foreach (var (side, c) in new[] { (56, 384), (28, 768), (14, 1536), (7, 3072) })
            ElementBench("gelu", OpaqueModule.Create("GELU", "torch.nn", [new("approximate", "none")]), Random(new Random(3), 1, side, side, c));
        break;
    case "softmax":
        foreach (var shape in new[] { new[] { 1, 12, 197, 197 }, new[] { 64, 3, 49, 49 } })
            ElementBench("softmax(dim=-1)", OpaqueModule.Create("Softmax", "torch.nn", [new("dim", -1L)]), Random(new Random(4), shape));
        break;
    case "joins":
        // resnet18's residual joins (3x3 C->C, Winograd) and resnet50's (1x1 expansions, GEMM) as ConvAddReLU computes them.
        foreach (var (cin, cout, size, k) in new[] { (64, 64, 56, 3), (128, 128, 28, 3), (256, 256, 14, 3), (512, 512, 7, 3),
                                                     (64, 256, 56, 1), (128, 512, 28, 1), (256, 1024, 14, 1), (512, 2048, 7, 1) })
            JoinBench(cin, cout, size, k);
        break;
    case "file":
    {
        // A model file as written (e.g. by fusion auto --rules extended) on a random input of its input shape: wall and
        // CPU time per forward pass, medians, three rounds.
        var content = ModelFile.ReadContent(netName);
        var x = Random(new Random(1), [.. content.InputShape]);
        var rounds = new List<string>();
        // One session: weights packed once, buffers recycled, as a server runs the model.
        using var session = EngineSession.Open(content.Model, new EngineSessionOptions { Threads = threads });
        for (var round = 0; round < 3; round++)
        {
            var t = Median(() => session.Run(x));
            rounds.Add($"{t:F2}/{Cpu:F2}");
        }
        Console.WriteLine($"{netName} {Tensor.ShapeString(x.Shape)}: wall/CPU ms per pass (medians, 3 rounds) {string.Join("  ", rounds)}");
        break;
    }
    case "profile":
    {
        // Times every module the graph calls, through forward hooks (hooks on a fused group keep it fused). NAME is a zoo
        // network, or a model file or folder (fused with the groups discovery finds, as fusion auto does).
        var (unfusedNet, fusedModel, input) = File.Exists(netName) || Directory.Exists(netName) ? FromFile(netName) : Zoo(netName);
        var detail = Environment.GetEnvironmentVariable("BENCH_DETAIL") == "1";
        foreach (var fusedFlag in new[] { false, true })
        {
            var net = fusedFlag ? fusedModel : unfusedNet;
            var times = new Dictionary<string, double>();
            var started = new Dictionary<string, long>();
            foreach (var path in ((UserModule)net).Forward!.ModuleCalls.Distinct())
            {
                var p = path;
                var pre = new ForwardPreHook("t0", (_, _) => { started[p] = Stopwatch.GetTimestamp(); return null; });
                var post = new ForwardHook("t1", (m, xin, _) =>
                {
                    var ms = (Stopwatch.GetTimestamp() - started[p]) * 1000.0 / Stopwatch.Frequency;
                    var conv = m as Conv ?? (m.Children.Count > 0 ? m.Children[0].Module as Conv : null);
                    var key = detail && conv is not null
                        ? $"{m.TypeName} {conv.InChannels}->{conv.OutChannels} k{conv.KernelSize[0]} s{conv.Stride[0]} g{conv.Groups} on {Tensor.ShapeString(xin.Shape)}"
                        : m.TypeName;
                    times[key] = times.GetValueOrDefault(key) + ms;
                    return null;
                });
                net = ModulePath.Replace(net, p, ModulePath.Get(net, p).AddPreHook(pre).AddHook(post));
            }
            for (var i = 0; i < 10; i++) Forward.Run(net, input, options);
            times.Clear();
            var pause0 = GC.GetTotalPauseDuration();
            var gc0 = GC.CollectionCount(2);
            var sw = Stopwatch.StartNew();
            for (var i = 0; i < 20; i++) Forward.Run(net, input, options);
            var perPass = sw.Elapsed.TotalMilliseconds / 20;
            Console.WriteLine($"{(fusedFlag ? "fused" : "unfused")}: {perPass:F2} ms per pass, " +
                              $"{(GC.CollectionCount(2) - gc0) / 20.0:F1} gen2 GCs and {(GC.GetTotalPauseDuration() - pause0).TotalMilliseconds / 20:F2} ms GC pause per pass");
            foreach (var kv in times.OrderByDescending(kv => kv.Value).Take(detail ? 25 : 100)) Console.WriteLine($"  {kv.Key,-20} {kv.Value / 20:F2} ms");
            // What the hooks do not see: the graph's functions (add, mul, mean, ...) and the interpreter between calls.
            Console.WriteLine($"  {"(outside modules)",-20} {perPass - times.Values.Sum() / 20:F2} ms");
        }
        break;
    }
    case "int8":
        Console.WriteLine($"int8 path: {Int8Gemm.Path}");
        foreach (var (cin, cout, size) in new[] { (64, 256, 56), (256, 64, 56), (512, 128, 28), (1024, 256, 14), (2048, 512, 7) })
            Int8Bench(cin, cout, size);
        break;
    default:
        Console.Error.WriteLine($"unknown benchmark '{mode}' (conv, layers, layers50, net NAME, profile NAME, fuse NAME, int8)");
        return 2;
}
return 0;

// The int8 GEMM of a 1x1 convolution cin -> cout on size x size pixels (M = cout, K = cin, N = size²) beside the
// float convolution of the same shape, in GOP/s (two operations per multiply-add).
void Int8Bench(int cin, int cout, int size)
{
    var rng = new Random(3);
    var n = size * size;
    var w = Int8Weights.Pack(Enumerable.Range(0, cout * cin).Select(_ => (sbyte)rng.Next(-128, 128)).ToArray(), cout, cin);
    var c = new int[cout * n];
    var ops = 2.0 * cout * cin * n;
    var line = $"1x1 {cin}->{cout} at {size}x{size}:";
    foreach (var top in new[] { 127, 255 })
    {
        var x = Enumerable.Range(0, cin * n).Select(_ => (byte)rng.Next(0, top + 1)).ToArray();
        var ms = MedianMs(() => Int8Gemm.Run(w, x, n, 3, c, threads));
        line += $" int8 0..{top} {ms:F3} ms = {ops / ms / 1e6:F1} GOP/s;";
    }
    var conv = Conv.Create(2, cin, cout, [1], [1], ConvPadding.Explicit(0), bias: false, seed: 1);
    var input = Random(new Random(2), 1, cin, size, size);
    var t = Median(() => Forward.Run(conv, input, options));
    Console.WriteLine($"{line} float32 conv {t:F3} ms = {ops / t / 1e6:F1} GFLOP/s");
}

void LinearBench(int side, int inF, int outF)
{
    var linear = Linear.Create(inF, outF, seed: 1);
    var input = Random(new Random(2), 1, side, side, inF);
    var flops = 2.0 * side * side * inF * outF;
    using var session = EngineSession.Open(linear, new EngineSessionOptions { Threads = threads });
    Best = double.MaxValue;
    var t = Median(() => session.Run(input));
    Console.WriteLine($"linear {inF}->{outF} on {side}x{side} tokens: {t:F3} ms = {flops / t / 1e6:F1} GFLOP/s (best sample {flops / Best / 1e6:F1}, per CPU-second {flops / Cpu / 1e6:F1})");
}

// An element-wise module in its own session: ms per pass and ns per element (GELU, softmax).
void ElementBench(string label, Module module, Tensor input)
{
    var n = (double)input.Count;
    using var session = EngineSession.Open(module, new EngineSessionOptions { Threads = threads });
    Best = double.MaxValue;
    var t = Median(() => session.Run(input));
    Console.WriteLine($"{label} on [{string.Join(", ", input.Shape.ToArray())}]: {t:F3} ms = {t * 1e6 / n:F2} ns per element (per CPU-second {Cpu * 1e6 / n:F2})");
}

void ConvShapes((int In, int Out, int Size, int K, int Stride, int Pad, int Groups)[] shapes)
{
    foreach (var c in shapes) ConvBench(c.In, c.Out, c.Size, c.K, c.Stride, c.Pad, c.Groups);
}

void ConvBench(int cin, int cout, int size, int k, int stride, int pad, int groups)
{
    var conv = Conv.Create(2, cin, cout, [k], [stride], ConvPadding.Explicit(pad), groups: groups, seed: 1);
    var input = Random(new Random(2), 1, cin, size, size);
    var outSize = (size + 2 * pad - k) / stride + 1;
    var flops = 2.0 * cout * (cin / groups) * k * k * outSize * outSize;
    var fused = FusedModule.Create("ConvReLU2d", conv, Activation.Create(ActivationKind.ReLU));
    var plain = Sequential.Create(conv, Activation.Create(ActivationKind.ReLU));
    Best = double.MaxValue;
    var t = Median(() => Forward.Run(conv, input, options));
    var best = Best;
    var cpuMs = Cpu;
    var tf = Median(() => Forward.Run(fused, input, options));
    var tp = Median(() => Forward.Run(plain, input, options));
    Console.WriteLine($"  GC gen0/1/2 so far: {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}, pause {GC.GetTotalPauseDuration().TotalMilliseconds:F0} ms");
    Console.WriteLine($"conv {cin}->{cout} k{k} s{stride} g{groups} at {size}x{size}: {t:F3} ms = {flops / t / 1e6:F1} GFLOP/s (best sample {flops / best / 1e6:F1}, per CPU-second {flops / cpuMs / 1e6:F1}); " +
                      $"ConvReLU fused {tf:F3} ms vs conv then ReLU {tp:F3} ms");
}

// relu(conv(x) + r) two ways, in alternating rounds, on one pass with a buffer pool as a session runs it: the convolution
// with its bias, a separate add into a fresh buffer and the ReLU in place (the engine before the residual epilogue), and
// the add and ReLU in the convolution's epilogue. The two must give the same bits.
void JoinBench(int cin, int cout, int size, int k)
{
    var conv = Conv.Create(2, cin, cout, [k], padding: ConvPadding.Explicit(k / 2), seed: 1);
    var x = Random(new Random(2), 1, cin, size, size);
    var r = Random(new Random(3), 1, cout, size, size);
    var bias = conv.Bias!.ToArray();
    var residual = r.ToArray();  // copied once: the engine reads the residual tensor's own array
    var pool = new Pass(threads, new PackStore(), new BufferPool(1L << 30));
    // The timed forms give their outputs back to the pool (as the next layer would); the check keeps them.
    Tensor Separate(Pass pass)
    {
        var y = ConvKernels.Forward(conv, x, Epilogue.Bias(bias), pass);
        var z = TensorOps.Apply(TensorOps.Binary.Add, y, r, pass);
        pass.Release(y);
        return TensorOps.Activation(z, Act.ReLU, pass, inPlace: true);
    }
    Tensor InEpilogue(Pass pass) => ConvKernels.Forward(conv, x, new Epilogue(null, bias, Act.ReLU, residual), pass);
    Tensor Timed(Func<Pass, Tensor> form)
    {
        var z = form(pool);
        pool.Release(z);
        return z;
    }
    var same = InEpilogue(new Pass(threads, new PackStore(), null)).Equals(Separate(new Pass(threads, new PackStore(), null)));
    var rounds = new List<string>();
    // Wall time and CPU time (all threads) per call: on a shared machine the CPU time is the steadier of the two.
    var cpu = new List<string>();
    for (var round = 0; round < 3; round++)
    {
        var ts = Median(() => Timed(Separate));
        var cs = Cpu;
        var te = Median(() => Timed(InEpilogue));
        rounds.Add($"{ts:F3}/{te:F3}");
        cpu.Add($"{cs:F3}/{Cpu:F3}");
    }
    Console.WriteLine($"join {cin}->{cout} k{k} at {size}x{size}: separate/epilogue, medians of 3 rounds: wall ms {string.Join("  ", rounds)}; " +
                      $"CPU ms {string.Join("  ", cpu)}; same bits {same}");
}

static double Median(Func<Tensor> run)
{
    for (var i = 0; i < 5; i++) run();
    var sw = new Stopwatch();
    var reps = 1;
    sw.Restart(); run(); sw.Stop();
    // Each sample lasts at least ~20 ms so the timer's resolution does not matter.
    if (sw.Elapsed.TotalMilliseconds < 20) reps = (int)Math.Ceiling(20 / Math.Max(0.001, sw.Elapsed.TotalMilliseconds));
    var samples = new double[5];
    var cpu = new double[5];
    var proc = Process.GetCurrentProcess();
    for (var s = 0; s < samples.Length; s++)
    {
        var c0 = proc.TotalProcessorTime;
        sw.Restart();
        for (var r = 0; r < reps; r++) run();
        sw.Stop();
        proc.Refresh();
        cpu[s] = (proc.TotalProcessorTime - c0).TotalMilliseconds / reps;
        samples[s] = sw.Elapsed.TotalMilliseconds / reps;
    }
    Array.Sort(cpu);
    Cpu = cpu[2];
    Array.Sort(samples);
    Best = Math.Min(Best, samples[0]);
    return samples[2];
}

// The median of 9 timed runs after 2 warm-ups (for one-shot work such as a fusion).
static double MedianMs(Action run)
{
    run();
    run();
    var t = new double[9];
    for (var i = 0; i < t.Length; i++)
    {
        var sw = Stopwatch.StartNew();
        run();
        t[i] = sw.Elapsed.TotalMilliseconds;
    }
    Array.Sort(t);
    return t[t.Length / 2];
}

static long Allocated(Action run)
{
    var before = GC.GetTotalAllocatedBytes(precise: true);
    run();
    return GC.GetTotalAllocatedBytes(precise: true) - before;
}

// Minor page faults of this process so far (Linux; -1 elsewhere): first touches of freshly allocated memory.
static long MinorFaults()
{
    try { return long.Parse(File.ReadAllText("/proc/self/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[7], System.Globalization.CultureInfo.InvariantCulture); }
    catch (IOException) { return -1; }
}

static Tensor Random(Random rng, params int[] shape) => Tensor.Generate(_ => (float)(rng.NextDouble() * 2 - 1), shape);

// A zoo network with randomised BatchNorm statistics, and its fusion by torchvision's own fuse groups.
static (Module Model, Module Fused, Tensor Input) FromFile(string path)
{
    var content = ModelFile.ReadContent(path);
    var fused = Fuser.FuseModules(content.Model, Fuser.FindFusableGroups(content.Model));
    return (content.Model, fused, Random(new Random(1), [.. content.InputShape]));
}

static (Module Model, Module Fused, Tensor Input) Zoo(string name)
{
    var z = ModelZoo.Create(name, seed: 1, randomizeBatchNorm: true);
    var fused = Fuser.FuseModules(z.Model, z.FuseGroups.Select(g => (IEnumerable<string>)g));
    if (Environment.GetEnvironmentVariable("BENCH_NORECYCLE") == "1")
    {
        // A hook anywhere turns buffer recycling off (for comparing its effect).
        var noop = new ForwardHook("no-op", (_, _, _) => null);
        return (z.Model.AddHook(noop), fused.AddHook(noop), Random(new Random(1), z.InputShape));
    }
    return (z.Model, fused, Random(new Random(1), z.InputShape));
}

partial class Program
{
    /// <summary>The fastest sample seen so far (the machine is shared, so the median is noisy).</summary>
    public static double Best = double.MaxValue;
    /// <summary>Median CPU time of the last measurement (all threads), which other processes on the machine do not inflate.</summary>
    public static double Cpu;
}

