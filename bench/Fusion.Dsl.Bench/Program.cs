// Forward-engine benchmarks. Usage (Release; every timing is the median of 5 runs after warm-up):
//   dotnet run -c Release --project bench/Fusion.Dsl.Bench -- conv [threads]      3x3 conv 64->64 at 1x64x56x56 (GFLOP/s)
//   dotnet run -c Release --project bench/Fusion.Dsl.Bench -- resnet18 [threads]  resnet18 at 1x3x224x224, unfused vs fused
//   dotnet run -c Release --project bench/Fusion.Dsl.Bench -- layers [threads]    resnet18's distinct conv shapes (GFLOP/s each)
using System.Diagnostics;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

var mode = args.Length > 0 ? args[0] : "conv";
var threads = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : Environment.ProcessorCount;
var options = new ForwardOptions { Threads = threads };
Console.WriteLine($"{mode}, threads={threads}, cores={Environment.ProcessorCount}");

switch (mode)
{
    case "conv":
        ConvBench(64, 64, 56, 3, 1, 1, 1);
        break;
    case "layers":
        ConvBench(3, 64, 224, 7, 2, 3, 1);
        ConvBench(64, 64, 56, 3, 1, 1, 1);
        ConvBench(64, 128, 56, 3, 2, 1, 1);
        ConvBench(64, 128, 56, 1, 2, 0, 1);
        ConvBench(128, 128, 28, 3, 1, 1, 1);
        ConvBench(256, 256, 14, 3, 1, 1, 1);
        ConvBench(512, 512, 7, 3, 1, 1, 1);
        ConvBench(96, 96, 56, 3, 1, 1, 96);
        ConvBench(96, 96, 112, 3, 2, 1, 96);
        break;
    case "resnet18":
        var x = Random(new Random(1), 1, 3, 224, 224);
        var unfused = ResNet18(fused: false);
        var fusedNet = ResNet18(fused: true);
        var tu = Median(() => Forward.Run(unfused, x, options));
        var tf = Median(() => Forward.Run(fusedNet, x, options));
        Console.WriteLine($"resnet18 1x3x224x224: unfused {tu:F2} ms, fused {tf:F2} ms ({tu / tf:F2}x)");
        break;
    default:
        Console.Error.WriteLine($"unknown benchmark '{mode}' (conv, layers, resnet18)");
        return 2;
}
return 0;

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

static Tensor Random(Random rng, params int[] shape) => Tensor.Generate(_ => (float)(rng.NextDouble() * 2 - 1), shape);

// torchvision's resnet18 as a traced graph over leaf paths (as the fixtures record networks). Fused: PyTorch's eval
// fusion result, ConvReLU2d / Conv with the BatchNorm folded (random weights stand in), Identity where BN/ReLU were.
static Module ResNet18(bool fused)
{
    var rng = new Random(3);
    var seed = 0;
    var children = new List<(string, Module)>();
    var nodes = new List<GraphNode> { new(NodeOp.Placeholder, "x") };
    string last = "x";
    string Call(string path, string input)
    {
        var name = path.Replace('.', '_');
        nodes.Add(new GraphNode(NodeOp.CallModule, name, path, [GraphArg.Ref(input)]));
        return name;
    }
    Module Bn(int c) => BatchNorm.Create(2, c, runningMean: Random(rng, c), runningVar: Tensor.Generate(_ => (float)(0.5 + rng.NextDouble()), c));
    // conv [+ bn] [+ relu] as modules of a container (returns the container's children in order)
    List<(string, Module)> ConvBnRelu(int cin, int cout, int k, int s, int p, bool relu)
    {
        var conv = Conv.Create(2, cin, cout, [k], [s], ConvPadding.Explicit(p), bias: fused, seed: ++seed);
        var list = new List<(string, Module)>();
        if (fused)
        {
            list.Add(("conv", relu ? FusedModule.Create("ConvReLU2d", conv, Activation.Create(ActivationKind.ReLU)) : conv));
            list.Add(("bn", Identity.Create()));
            if (relu) list.Add(("relu", Identity.Create()));
        }
        else
        {
            list.Add(("conv", conv));
            list.Add(("bn", Bn(cout)));
            if (relu) list.Add(("relu", Activation.Create(ActivationKind.ReLU)));
        }
        return list;
    }
    // stem
    var stem = ConvBnRelu(3, 64, 7, 2, 3, true);
    children.Add(("conv1", stem[0].Item2)); children.Add(("bn1", stem[1].Item2)); children.Add(("relu", stem[2].Item2));
    last = Call("relu", Call("bn1", Call("conv1", last)));
    children.Add(("maxpool", MaxPool2d.Create([3], [2], [1])));
    last = Call("maxpool", last);
    var cin = 64;
    foreach (var (layer, cout, stride) in new[] { ("layer1", 64, 1), ("layer2", 128, 2), ("layer3", 256, 2), ("layer4", 512, 2) })
    {
        var blocks = new List<Module>();
        for (var b = 0; b < 2; b++)
        {
            var s = b == 0 ? stride : 1;
            var p = $"{layer}.{b}";
            var a = ConvBnRelu(cin, cout, 3, s, 1, true);
            var c = ConvBnRelu(cout, cout, 3, 1, 1, false);
            var blockChildren = new List<(string, Module)>
            {
                ("conv1", a[0].Item2), ("bn1", a[1].Item2), ("relu", Activation.Create(ActivationKind.ReLU)),
                ("conv2", c[0].Item2), ("bn2", c[1].Item2),
            };
            var input = last;
            var h = Call($"{p}.conv1", input);
            h = Call($"{p}.bn1", h);
            if (fused) blockChildren[2] = ("relu", Identity.Create());
            h = Call($"{p}.relu", h);
            h = Call($"{p}.bn2", Call($"{p}.conv2", h));
            var identity = input;
            if (s != 1 || cin != cout)
            {
                var d = ConvBnRelu(cin, cout, 1, s, 0, false);
                blockChildren.Add(("downsample", Sequential.Create(d[0].Item2, d[1].Item2)));
                identity = Call($"{p}.downsample.1", Call($"{p}.downsample.0", input));
            }
            var sum = $"add_{layer}_{b}";
            nodes.Add(new GraphNode(NodeOp.CallFunction, sum, "add", [GraphArg.Ref(h), GraphArg.Ref(identity)]));
            // The block's closing ReLU (after the residual add) is not fused by PyTorch's eager fusion.
            nodes.Add(new GraphNode(NodeOp.CallFunction, sum + "_relu", "relu", [GraphArg.Ref(sum)]));
            last = sum + "_relu";
            blocks.Add(UserModule.Create("BasicBlock", ModuleChildren.Create(blockChildren.Select(t => (t.Item1, t.Item2)).ToArray())));
            cin = cout;
        }
        children.Add((layer, Sequential.Create(blocks.ToArray())));
    }
    children.Add(("avgpool", AdaptiveAvgPool2d.Create([1])));
    last = Call("avgpool", last);
    nodes.Add(new GraphNode(NodeOp.CallFunction, "flatten", "flatten", [GraphArg.Ref(last), GraphArg.Const(1)]));
    children.Add(("fc", Linear.Create(512, 1000, seed: ++seed)));
    last = Call("fc", "flatten");
    nodes.Add(new GraphNode(NodeOp.Output, "output", null, [GraphArg.Ref(last)]));
    return UserModule.Create("ResNet", ModuleChildren.Create(children.ToArray()), new Graph(nodes));
}

partial class Program
{
    /// <summary>The fastest sample seen so far (the machine is shared, so the median is noisy).</summary>
    public static double Best = double.MaxValue;
    /// <summary>Median CPU time of the last measurement (all threads), which other processes on the machine do not inflate.</summary>
    public static double Cpu;
}

