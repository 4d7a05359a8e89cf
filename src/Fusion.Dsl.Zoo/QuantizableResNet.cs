using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// torchvision's <c>QuantizableResNet</c> (<c>torchvision.models.quantization.resnet</c>, 0.14) built from the algebra:
/// <c>QuantizableBasicBlock</c> (resnet18) or <c>QuantizableBottleneck</c> (resnet50, stride on the 3×3 convolution),
/// every ReLU replaced by <c>ReLU(inplace=False)</c>, the residual sum through a <c>FloatFunctional.add_relu</c>.
/// </summary>
internal static class QuantizableResNet
{
    /// <summary>Builds the network with <paramref name="layers"/> blocks per stage.</summary>
    public static ZooModel Build(string name, int[] layers, bool bottleneck, int seed, int numClasses, bool randomizeBatchNorm)
    {
        var b = new ZooBuilder(seed, randomizeBatchNorm);
        var t = b.Trace;
        var children = new List<(string, Module)>
        {
            ("conv1", b.Conv("conv1", 3, 64, 7, stride: 2, padding: 3)),
            ("bn1", b.BatchNorm("bn1", 64)),
            ("relu", ZooBuilder.ReLU()),
            ("maxpool", MaxPool2d.Create([3], stride: [2], padding: [1])),
        };
        var x = t.Placeholder("x");
        foreach (var stem in new[] { "conv1", "bn1", "relu", "maxpool" }) x = t.Module(stem, x);
        // QuantizableResNet.fuse_model: the stem first, then each block in self.modules() order.
        b.Fuse("conv1", "bn1", "relu");

        var expansion = bottleneck ? 4 : 1;
        var inplanes = 64;
        for (var stage = 0; stage < layers.Length; stage++)
        {
            var planes = 64 << stage;
            var blocks = new Module[layers[stage]];
            for (var i = 0; i < blocks.Length; i++)
            {
                var stride = i == 0 && stage > 0 ? 2 : 1;
                var downsample = stride != 1 || inplanes != planes * expansion;
                var path = $"layer{stage + 1}.{i}";
                blocks[i] = bottleneck
                    ? Bottleneck(b, path, inplanes, planes, stride, downsample, ref x)
                    : BasicBlock(b, path, inplanes, planes, stride, downsample, ref x);
                inplanes = planes * expansion;
            }
            children.Add(($"layer{stage + 1}", Sequential.Create(blocks)));
        }

        children.Add(("avgpool", AdaptiveAvgPool2d.Create([1, 1])));
        children.Add(("fc", b.LinearDefault("fc", 512 * expansion, numClasses)));
        x = t.Module("avgpool", x);
        x = t.Function("flatten", [GraphArg.Ref(x), GraphArg.Const(1)]);
        x = t.Module("fc", x);
        t.Output(x);
        return new ZooModel(name, b.Root("QuantizableResNet", children), b.FuseGroups, [1, 3, 224, 224]);
    }

    private static UserModule BasicBlock(ZooBuilder b, string path, int inplanes, int planes, int stride, bool downsample, ref string x)
    {
        var children = new List<(string, Module)>
        {
            ("conv1", b.Conv(path + ".conv1", inplanes, planes, 3, stride, padding: 1)),
            ("bn1", b.BatchNorm(path + ".bn1", planes)),
            ("relu", ZooBuilder.ReLU()),
            ("conv2", b.Conv(path + ".conv2", planes, planes, 3, padding: 1)),
            ("bn2", b.BatchNorm(path + ".bn2", planes)),
        };
        var input = x;
        var y = input;
        foreach (var m in new[] { "conv1", "bn1", "relu", "conv2", "bn2" }) y = b.Trace.Module($"{path}.{m}", y);
        var identity = Downsample(b, path, inplanes, planes, stride, downsample, children, input);
        children.Add(("add_relu", ZooBuilder.FloatFunctional()));
        x = b.TraceAddReLU(path + ".add_relu", y, identity);

        b.Fuse(path + ".conv1", path + ".bn1", path + ".relu");
        b.Fuse(path + ".conv2", path + ".bn2");
        if (downsample) b.Fuse(path + ".downsample.0", path + ".downsample.1");
        return ZooBuilder.User("QuantizableBasicBlock", [.. children]);
    }

    private static UserModule Bottleneck(ZooBuilder b, string path, int inplanes, int planes, int stride, bool downsample, ref string x)
    {
        var outplanes = planes * 4;
        var children = new List<(string, Module)>
        {
            ("conv1", b.Conv(path + ".conv1", inplanes, planes, 1)),
            ("bn1", b.BatchNorm(path + ".bn1", planes)),
            ("conv2", b.Conv(path + ".conv2", planes, planes, 3, stride, padding: 1)),
            ("bn2", b.BatchNorm(path + ".bn2", planes)),
            ("conv3", b.Conv(path + ".conv3", planes, outplanes, 1)),
            ("bn3", b.BatchNorm(path + ".bn3", outplanes)),
            // Bottleneck's own ReLU stays a child though the quantizable forward uses relu1/relu2 instead.
            ("relu", ZooBuilder.ReLU()),
        };
        var input = x;
        var y = input;
        foreach (var m in new[] { "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3" }) y = b.Trace.Module($"{path}.{m}", y);
        var identity = Downsample(b, path, inplanes, outplanes, stride, downsample, children, input);
        children.Add(("skip_add_relu", ZooBuilder.FloatFunctional()));
        children.Add(("relu1", ZooBuilder.ReLU()));
        children.Add(("relu2", ZooBuilder.ReLU()));
        x = b.TraceAddReLU(path + ".skip_add_relu", y, identity);

        b.Fuse(path + ".conv1", path + ".bn1", path + ".relu1");
        b.Fuse(path + ".conv2", path + ".bn2", path + ".relu2");
        b.Fuse(path + ".conv3", path + ".bn3");
        if (downsample) b.Fuse(path + ".downsample.0", path + ".downsample.1");
        return ZooBuilder.User("QuantizableBottleneck", [.. children]);
    }

    /// <summary>Adds the 1×1 projection <c>downsample</c> child when the shape changes and traces it on the block input;
    /// returns the node holding the identity branch.</summary>
    private static string Downsample(ZooBuilder b, string path, int inplanes, int outplanes, int stride, bool downsample,
        List<(string, Module)> children, string input)
    {
        if (!downsample) return input;
        children.Add(("downsample", Sequential.Create(
            b.Conv(path + ".downsample.0", inplanes, outplanes, 1, stride),
            b.BatchNorm(path + ".downsample.1", outplanes))));
        var d = b.Trace.Module(path + ".downsample.0", input);
        return b.Trace.Module(path + ".downsample.1", d);
    }
}
