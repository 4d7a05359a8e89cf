using System.CommandLine;
using System.Globalization;
using Fusion.Dsl;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>
/// <c>fusion demo</c>: the README's main job. Builds a zoo network (random weights, random BatchNorm statistics), fuses it
/// with torchvision's own <c>fuse_model()</c> groups, verifies the fused forward against the unfused one, and prints a
/// table of the groups, the BatchNorm elements folded away, the time to fuse and the forward time before and after.
/// Times are medians of <c>--runs</c> runs after warm-up (the first pass packs the weights and compiles the kernels) with
/// the fastest and slowest run beside them, and the speed ratio says which medians it divides: a single cold run once
/// showed a user "0.28x".
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "the zoo network: " + string.Join(", ", ModelZoo.Names), DefaultValueFactory = _ => "resnet18" };
        model.AcceptOnlyFromAmong([.. ModelZoo.Names]);
        // Seven runs: on a shared two-core machine the median of three still moved by a fifth between invocations.
        var runs = new Option<int>("--runs") { Description = "timed runs after warm-up (the median and the range are printed)", DefaultValueFactory = _ => 7 };
        runs.Validators.Add(Validate.Positive);
        var c = new Command("demo", "fuse a zoo network with torchvision's groups, verify, and report") { model, runs };
        c.SetAction(r => Run(r.GetValue(model)!, r.GetValue(runs)));
        return c;
    }

    private static int Run(string name, int runs)
    {
        var ci = CultureInfo.InvariantCulture;
        var w = Console.Out;

        Console.Error.WriteLine($"building {name} with seeded random weights and BatchNorm statistics...");
        var z = ModelZoo.Create(name, seed: 1, randomizeBatchNorm: true);
        var x = ModelSource.Probe(z.InputShape, 1);
        var groups = z.FuseGroups.Select(g => (IEnumerable<string>)g).ToList();

        Console.Error.WriteLine($"fusing {groups.Count} groups (torchvision's fuse_model() list)...");
        var fused = Fuser.FuseModules(z.Model, groups);
        var fuse = Timing.Measure(() => Fuser.FuseModules(z.Model, groups), runs);

        w.WriteLine(string.Create(ci, $"{name}: {groups.Count} groups fused with fuse_modules (eval)"));
        w.WriteLine($"{"#",3}  {"group",-58} {"kinds",-30} {"result",-14} {"folded",8}");
        long foldedTotal = 0;
        for (var i = 0; i < z.FuseGroups.Count; i++)
        {
            var g = z.FuseGroups[i];
            var kinds = string.Join("+", g.Select(p => ModulePath.Get(z.Model, p).TypeName.Replace("BatchNorm", "BN", StringComparison.Ordinal)));
            var result = ModulePath.Get(fused, g[0]).TypeName;
            // Eval fusion folds every BatchNorm of the group into the preceding layer: its elements disappear from the model.
            var folded = g.Select(p => ModulePath.Get(z.Model, p)).OfType<BatchNorm>().Sum(b => b.StateElementCount());
            foldedTotal += folded;
            var label = Shorten(string.Join(",", g), 58);
            w.WriteLine(string.Create(ci, $"{i + 1,3}  {label,-58} {kinds,-30} {result,-14} {folded,8:N0}"));
        }
        w.WriteLine(string.Create(ci, $"parameters and buffers: {z.Model.StateElementCount():N0} before, {fused.StateElementCount():N0} after ({foldedTotal:N0} BatchNorm elements folded)"));
        w.WriteLine(string.Create(ci, $"time to fuse: {fuse.Describe("F2")}, the median of {runs} runs after warm-up (the input model is shared, not copied)"));

        Console.Error.WriteLine($"running the forward pass on {Fusion.Dsl.Tensors.Tensor.ShapeString(x.Shape)}, {runs} runs each after warm-up...");
        using var unfusedSession = EngineSession.Open(z.Model);
        using var fusedSession = EngineSession.Open(fused);
        var yBefore = unfusedSession.Run(x);
        var yAfter = fusedSession.Run(x);
        // The passes above were the first through each session (they pack the weights); Measure warms up once more.
        var before = Timing.Measure(() => unfusedSession.Run(x), runs);
        var after = Timing.Measure(() => fusedSession.Run(x), runs);
        var diff = yAfter.MaxAbsDiff(yBefore);
        var rel = diff / Math.Max(yBefore.MaxAbs(), 1e-30);
        w.WriteLine(string.Create(ci, $"forward {Fusion.Dsl.Tensors.Tensor.ShapeString(x.Shape)}, medians of {runs} runs after warm-up: {before.Describe("F1")} unfused, {after.Describe("F1")} fused"));
        var noise = before.Overlaps(after) ? "; the two ranges overlap, so the difference is within this machine's run-to-run noise" : "";
        w.WriteLine(string.Create(ci, $"  unfused / fused = {before.Median / after.Median:F2}x: the ratio of the medians of {runs} runs each after warm-up, on {Environment.ProcessorCount} cores{noise}"));
        w.WriteLine(string.Create(ci, $"verification: max |fused - unfused| = {diff:G3} ({rel:G3} of the output's largest magnitude)"));
        var ok = rel <= 1e-4;
        w.WriteLine(ok ? "equivalent: yes" : "equivalent: NO");
        return ok ? 0 : 1;
    }

    private static string Shorten(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
