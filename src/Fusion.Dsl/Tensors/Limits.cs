namespace Fusion.Dsl.Tensors;

/// <summary>
/// The sizes this library accepts, stated once (docs/guide.md, "Limits") and checked where a value enters: a tensor's
/// shape, a layer's arguments, a forward pass's intermediate results. They keep every size the kernels compute inside
/// 32-bit arithmetic, and an absurd size from a file or a command line a clear error instead of gigabytes of memory.
/// </summary>
public static class Limits
{
    /// <summary>The most elements one tensor may hold: 2^28 (1 GiB of float32), far above any layer of the
    /// torchvision networks (VGG's largest weight has about 2^27).</summary>
    public const int MaxElements = 1 << 28;

    /// <summary>The largest value of a size-like layer argument (channels, features, kernel size, stride, padding,
    /// dilation, output padding, output size): 2^24.</summary>
    public const int MaxArgument = 1 << 24;

    /// <summary>The most levels of nested modules a model read from a file may have (the segments of a dotted module path
    /// such as <c>layer1.0.conv1</c>, three): 256. torchvision's networks nest at most five deep, and PyTorch's own
    /// recursion over a module tree fails long before this; deeper trees come only from hostile or broken files, which
    /// would otherwise cost time and memory with the square of the depth, or overflow the stack.</summary>
    public const int MaxModuleDepth = 256;

    /// <summary>The most elements of a tensor constant written into a graph (<see cref="Graphs.TensorLiteral"/>): 2^20,
    /// the Python exporter's own bound. maxvit's largest is 2,401; a larger tensor belongs in the state as a buffer.</summary>
    public const int MaxGraphConstantElements = 1 << 20;

    /// <summary>The most dimensions of a tensor constant written into a graph: 64, as many as PyTorch allows.</summary>
    public const int MaxRank = 64;

    /// <summary>The number of elements of a tensor of <paramref name="shape"/>, or null when a dimension is negative or the
    /// count is over <see cref="MaxElements"/> (computed in 64-bit arithmetic, stopping at the first dimension past the
    /// limit, so no shape overflows).</summary>
    public static int? ElementCount(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) return null;
            n *= d;
            if (n > MaxElements) return null;
        }
        return (int)n;
    }

    /// <summary>Throws unless <paramref name="value"/> lies in [<paramref name="min"/>, <see cref="MaxArgument"/>].</summary>
    /// <exception cref="ArgumentException">It does not; the message names the layer and the argument.</exception>
    public static void RequireArgument(string layer, string name, long value, long min)
    {
        if (value < min || value > MaxArgument)
            throw new ArgumentException(value < min
                ? $"{layer}: {name} must be at least {min}, got {value}"
                : $"{layer}: {name} is {value}, over the limit of {MaxArgument} for a size-like argument");
    }

    /// <summary><see cref="RequireArgument"/> for every entry.</summary>
    /// <exception cref="ArgumentException">An entry is out of range.</exception>
    public static void RequireArguments(string layer, string name, IEnumerable<int> values, long min)
    {
        foreach (var v in values) RequireArgument(layer, name, v, min);
    }
}
