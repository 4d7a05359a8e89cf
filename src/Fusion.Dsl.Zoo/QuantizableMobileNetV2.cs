using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// torchvision's <c>QuantizableMobileNetV2</c> (<c>torchvision.models.quantization.mobilenetv2</c>, 0.14) built from the
/// algebra: <c>Conv2dNormActivation</c> stem and head, <c>QuantizableInvertedResidual</c> blocks (each with a
/// <c>FloatFunctional</c> <c>skip_add</c>, used only where the block keeps its shape), ReLU6 replaced by
/// <c>ReLU(inplace=False)</c> as torchvision's <c>_replace_relu</c> does, and a Dropout(0.2) + Linear classifier.
/// </summary>
internal static class QuantizableMobileNetV2
{
    // (expand ratio t, channels c, repeats n, first stride s), torchvision's inverted_residual_setting.
    private static readonly (int T, int C, int N, int S)[] Setting =
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

    /// <summary>Builds the network with channel counts scaled by <paramref name="widthMult"/> (rounded to multiples of 8).</summary>
    public static ZooModel Build(string name, int seed, int numClasses, double widthMult, bool randomizeBatchNorm)
    {
        var b = new ZooBuilder(seed, randomizeBatchNorm);
        var t = b.Trace;
        var x = t.Placeholder("x");
        var input = MakeDivisible(32 * widthMult);
        var last = MakeDivisible(1280 * Math.Max(1.0, widthMult));

        var features = new List<Module> { ConvNormActivation(b, "features.0", 3, input, 3, stride: 2, groups: 1, ref x) };
        foreach (var (expand, c, n, s) in Setting)
        {
            var output = MakeDivisible(c * widthMult);
            for (var i = 0; i < n; i++)
            {
                features.Add(InvertedResidual(b, $"features.{features.Count}", input, output, i == 0 ? s : 1, expand, ref x));
                input = output;
            }
        }
        features.Add(ConvNormActivation(b, $"features.{features.Count}", input, last, 1, stride: 1, groups: 1, ref x));

        var classifier = Sequential.Create(Dropout.Create(0.2), b.LinearNormal("classifier.1", last, numClasses));
        x = t.Function("adaptive_avg_pool2d", [GraphArg.Ref(x), GraphArg.List(GraphArg.Const(1), GraphArg.Const(1))]);
        x = t.Function("flatten", [GraphArg.Ref(x), GraphArg.Const(1)]);
        x = t.Module("classifier.0", x);
        x = t.Module("classifier.1", x);
        t.Output(x);

        var root = b.Root("QuantizableMobileNetV2", [("features", Sequential.Create([.. features])), ("classifier", classifier)]);
        return new ZooModel(name, root, b.FuseGroups, [1, 3, 224, 224]);
    }

    /// <summary>torchvision's <c>_make_divisible(v, 8)</c>: nearest multiple of 8, at least 8, never more than 10% below <paramref name="v"/>.</summary>
    internal static int MakeDivisible(double v, int divisor = 8)
    {
        var rounded = Math.Max(divisor, (int)(v + divisor / 2.0) / divisor * divisor);
        return rounded < 0.9 * v ? rounded + divisor : rounded;
    }

    /// <summary><c>Conv2dNormActivation(in, out, kernel, stride, groups, activation_layer=ReLU6→ReLU)</c> at
    /// <paramref name="path"/>: Conv2d without bias (a norm layer follows), padding (k-1)/2, BatchNorm2d, ReLU.</summary>
    private static UserModule ConvNormActivation(ZooBuilder b, string path, int inChannels, int outChannels, int kernel, int stride,
        int groups, ref string x)
    {
        var m = ZooBuilder.User("Conv2dNormActivation",
            ("0", b.Conv(path + ".0", inChannels, outChannels, kernel, stride, padding: (kernel - 1) / 2, groups: groups)),
            ("1", b.BatchNorm(path + ".1", outChannels)),
            ("2", ZooBuilder.ReLU()));
        for (var i = 0; i < 3; i++) x = b.Trace.Module($"{path}.{i}", x);
        // QuantizableMobileNetV2.fuse_model fuses every Conv2dNormActivation when self.modules() reaches it.
        b.Fuse(path + ".0", path + ".1", path + ".2");
        return m;
    }

    private static UserModule InvertedResidual(ZooBuilder b, string path, int inp, int oup, int stride, int expand, ref string x)
    {
        var hidden = (int)Math.Round((double)inp * expand, MidpointRounding.ToEven);   // Python's round()
        var residual = stride == 1 && inp == oup;
        var input = x;
        // QuantizableInvertedResidual.fuse_model runs before self.modules() descends into its Conv2dNormActivation
        // children, so its Conv2d+BatchNorm2d pair comes first in the fuse list; record it once the layout is known.
        var groupsAt = b.FuseGroups.Count;
        var layers = new List<Module>();
        var y = input;
        if (expand != 1)
            layers.Add(ConvNormActivation(b, $"{path}.conv.{layers.Count}", inp, hidden, 1, stride: 1, groups: 1, ref y));
        layers.Add(ConvNormActivation(b, $"{path}.conv.{layers.Count}", hidden, hidden, 3, stride, groups: hidden, ref y));
        var project = layers.Count;
        layers.Add(b.Conv($"{path}.conv.{project}", hidden, oup, 1));
        layers.Add(b.BatchNorm($"{path}.conv.{project + 1}", oup));
        y = b.Trace.Module($"{path}.conv.{project}", y);
        y = b.Trace.Module($"{path}.conv.{project + 1}", y);
        x = residual ? b.TraceAdd(path + ".skip_add", input, y) : y;
        b.InsertFuse(groupsAt, $"{path}.conv.{project}", $"{path}.conv.{project + 1}");
        return ZooBuilder.User("QuantizableInvertedResidual",
            ("conv", Sequential.Create([.. layers])),
            ("skip_add", ZooBuilder.FloatFunctional()));
    }
}
