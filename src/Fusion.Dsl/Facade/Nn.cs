using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl;

/// <summary>
/// <c>torch.nn</c>'s constructors with PyTorch's parameter names in C# casing and PyTorch's defaults:
/// <c>nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)</c> reads
/// <c>Nn.Conv2d(3, 16, 3, stride: 2, padding: 1, bias: false)</c>. Size arguments take an int or a tuple
/// (<c>kernelSize: (3, 1)</c>), a convolution's <c>padding</c> also <c>"same"</c> or <c>"valid"</c>.
/// Weights are drawn with PyTorch's default initialisation from <c>seed</c> (default 0), deterministically.
/// Unlike PyTorch, new modules start in eval mode (see docs/guide.md); <see cref="Module.Train"/> switches.
/// Arguments are checked by the layers' <c>Create</c> methods, which throw <see cref="ArgumentException"/> naming the problem.
/// </summary>
public static class Nn
{
    /// <summary><c>nn.Conv1d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv Conv1d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, ConvPadding? padding = null,
        IntOrTuple? dilation = null, int groups = 1, bool bias = true, string paddingMode = "zeros", int seed = 0)
        => Conv(1, inChannels, outChannels, kernelSize, stride, padding, dilation, groups, bias, paddingMode, seed);

    /// <summary><c>nn.Conv2d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv Conv2d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, ConvPadding? padding = null,
        IntOrTuple? dilation = null, int groups = 1, bool bias = true, string paddingMode = "zeros", int seed = 0)
        => Conv(2, inChannels, outChannels, kernelSize, stride, padding, dilation, groups, bias, paddingMode, seed);

    /// <summary><c>nn.Conv3d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv Conv3d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, ConvPadding? padding = null,
        IntOrTuple? dilation = null, int groups = 1, bool bias = true, string paddingMode = "zeros", int seed = 0)
        => Conv(3, inChannels, outChannels, kernelSize, stride, padding, dilation, groups, bias, paddingMode, seed);

    /// <summary><c>nn.ConvTranspose1d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv ConvTranspose1d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, IntOrTuple? padding = null,
        IntOrTuple? outputPadding = null, int groups = 1, bool bias = true, IntOrTuple? dilation = null, string paddingMode = "zeros", int seed = 0)
        => ConvTranspose(1, inChannels, outChannels, kernelSize, stride, padding, outputPadding, groups, bias, dilation, paddingMode, seed);

    /// <summary><c>nn.ConvTranspose2d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv ConvTranspose2d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, IntOrTuple? padding = null,
        IntOrTuple? outputPadding = null, int groups = 1, bool bias = true, IntOrTuple? dilation = null, string paddingMode = "zeros", int seed = 0)
        => ConvTranspose(2, inChannels, outChannels, kernelSize, stride, padding, outputPadding, groups, bias, dilation, paddingMode, seed);

    /// <summary><c>nn.ConvTranspose3d</c>.</summary>
    /// <exception cref="ArgumentException">The arguments are inconsistent (see <see cref="Conv.Create"/>).</exception>
    public static Conv ConvTranspose3d(int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride = null, IntOrTuple? padding = null,
        IntOrTuple? outputPadding = null, int groups = 1, bool bias = true, IntOrTuple? dilation = null, string paddingMode = "zeros", int seed = 0)
        => ConvTranspose(3, inChannels, outChannels, kernelSize, stride, padding, outputPadding, groups, bias, dilation, paddingMode, seed);

    /// <summary><c>nn.BatchNorm1d</c>: weight 1, bias 0, running mean 0, running variance 1. A null <paramref name="momentum"/>
    /// is PyTorch's <c>momentum=None</c> (a cumulative average).</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="BatchNorm.Create"/>).</exception>
    public static BatchNorm BatchNorm1d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
        => BatchNorm.Create(1, numFeatures, eps, momentum, affine, trackRunningStats);

    /// <summary><c>nn.BatchNorm2d</c> (see <see cref="BatchNorm1d"/>).</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="BatchNorm.Create"/>).</exception>
    public static BatchNorm BatchNorm2d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
        => BatchNorm.Create(2, numFeatures, eps, momentum, affine, trackRunningStats);

    /// <summary><c>nn.BatchNorm3d</c> (see <see cref="BatchNorm1d"/>).</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="BatchNorm.Create"/>).</exception>
    public static BatchNorm BatchNorm3d(int numFeatures, double eps = 1e-5, double? momentum = 0.1, bool affine = true, bool trackRunningStats = true)
        => BatchNorm.Create(3, numFeatures, eps, momentum, affine, trackRunningStats);

    /// <summary><c>nn.Linear</c>, weights drawn as PyTorch's default initialisation from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="Layers.Linear.Create"/>).</exception>
    public static Linear Linear(int inFeatures, int outFeatures, bool bias = true, int seed = 0)
        => Layers.Linear.Create(inFeatures, outFeatures, bias, seed: seed);

    /// <summary><c>nn.ReLU</c>.</summary>
    public static Activation ReLU(bool inplace = false) => Activation.Create(ActivationKind.ReLU, inplace);
    /// <summary><c>nn.ReLU6</c>.</summary>
    public static Activation ReLU6(bool inplace = false) => Activation.Create(ActivationKind.ReLU6, inplace);
    /// <summary><c>nn.Hardswish</c>.</summary>
    public static Activation Hardswish(bool inplace = false) => Activation.Create(ActivationKind.Hardswish, inplace);
    /// <summary><c>nn.Hardsigmoid</c>.</summary>
    public static Activation Hardsigmoid(bool inplace = false) => Activation.Create(ActivationKind.Hardsigmoid, inplace);
    /// <summary><c>nn.SiLU</c>.</summary>
    public static Activation SiLU(bool inplace = false) => Activation.Create(ActivationKind.SiLU, inplace);

    /// <summary><c>nn.MaxPool2d</c>; <paramref name="stride"/> defaults to the kernel size. Sizes keep the form given (int or pair).</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="Layers.MaxPool2d.Create"/>).</exception>
    public static MaxPool2d MaxPool2d(IntOrTuple kernelSize, IntOrTuple? stride = null, IntOrTuple? padding = null, IntOrTuple? dilation = null,
        bool ceilMode = false)
        => Layers.MaxPool2d.Create(kernelSize.ToArray(), stride?.ToArray(), padding?.ToArray(), dilation?.ToArray(), ceilMode);

    /// <summary><c>nn.AvgPool2d</c>; <paramref name="stride"/> defaults to the kernel size. Sizes keep the form given (int or pair).</summary>
    /// <exception cref="ArgumentException">The arguments are invalid (see <see cref="Layers.AvgPool2d.Create"/>).</exception>
    public static AvgPool2d AvgPool2d(IntOrTuple kernelSize, IntOrTuple? stride = null, IntOrTuple? padding = null, bool ceilMode = false,
        bool countIncludePad = true)
        => Layers.AvgPool2d.Create(kernelSize.ToArray(), stride?.ToArray(), padding?.ToArray(), ceilMode, countIncludePad);

    /// <summary><c>nn.AdaptiveAvgPool2d</c>: <c>1</c> or <c>(1, 1)</c>, kept in the form given.</summary>
    /// <exception cref="ArgumentException">The size is invalid (see <see cref="Layers.AdaptiveAvgPool2d.Create"/>).</exception>
    public static AdaptiveAvgPool2d AdaptiveAvgPool2d(IntOrTuple outputSize) => Layers.AdaptiveAvgPool2d.Create(outputSize.ToArray());

    /// <summary><c>nn.Flatten</c>.</summary>
    public static Flatten Flatten(int startDim = 1, int endDim = -1) => Layers.Flatten.Create(startDim, endDim);

    /// <summary><c>nn.Dropout</c> (the identity in eval mode).</summary>
    /// <exception cref="ArgumentException"><paramref name="p"/> is outside [0, 1].</exception>
    public static Dropout Dropout(double p = 0.5, bool inplace = false) => Layers.Dropout.Create(p, inplace);

    /// <summary><c>nn.Identity</c>.</summary>
    public static Identity Identity() => Layers.Identity.Create();

    /// <summary><c>nn.Sequential()</c>: no children.</summary>
    public static Sequential Sequential() => Layers.Sequential.Create(ModuleChildren.Empty);

    /// <summary><c>nn.Sequential(*modules)</c>: children named <c>"0"</c>, <c>"1"</c>, ...</summary>
    public static Sequential Sequential(params Module[] modules) => Layers.Sequential.Create(modules);

    /// <summary><c>nn.Sequential(OrderedDict([("conv", ...), ("relu", ...)]))</c>: children under the given names, run in order.</summary>
    /// <exception cref="ArgumentException">A name is empty, contains a dot, or repeats.</exception>
    public static Sequential Sequential(params (string Name, Module Module)[] named)
        => Layers.Sequential.Create(ModuleChildren.Create(named));

    private static Conv Conv(int rank, int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride, ConvPadding? padding,
        IntOrTuple? dilation, int groups, bool bias, string paddingMode, int seed)
        => Layers.Conv.Create(rank, inChannels, outChannels, kernelSize.ToArray(), stride?.ToArray(), padding, dilation?.ToArray(), groups, bias,
            ParsePaddingMode(paddingMode), seed: seed);

    private static Conv ConvTranspose(int rank, int inChannels, int outChannels, IntOrTuple kernelSize, IntOrTuple? stride, IntOrTuple? padding,
        IntOrTuple? outputPadding, int groups, bool bias, IntOrTuple? dilation, string paddingMode, int seed)
        => Layers.Conv.Create(rank, inChannels, outChannels, kernelSize.ToArray(), stride?.ToArray(),
            padding is { } p ? ConvPadding.Explicit(p.ToArray()) : null, dilation?.ToArray(), groups, bias, ParsePaddingMode(paddingMode),
            transposed: true, outputPadding: outputPadding?.ToArray(), seed: seed);

    /// <summary>PyTorch's <c>padding_mode</c> strings.</summary>
    private static PaddingMode ParsePaddingMode(string mode) => mode switch
    {
        "zeros" => PaddingMode.Zeros,
        "reflect" => PaddingMode.Reflect,
        "replicate" => PaddingMode.Replicate,
        "circular" => PaddingMode.Circular,
        _ => throw new ArgumentException($"padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got '{mode}'", nameof(mode)),
    };
}
