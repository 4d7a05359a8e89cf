namespace Fusion.Dsl.Quantization;

/// <summary>
/// What PyTorch 1.13's quantized NHWC kernels leave behind for an input whose layouts coincide (a contiguous tensor with
/// 1×1 planes, which is also channels-last contiguous): the kernel is chosen by the input being channels-last
/// contiguous, but the output is allocated in the input's suggested memory format, contiguous, and the kernel writes
/// channels-last order into it. The integers PyTorch returns are then the [N, P, C] buffer read as [N, C, P].
/// </summary>
internal static class NhwcIntoContiguous
{
    /// <summary>The result <paramref name="y"/> [N, C, P] (NCHW order) as PyTorch returns it after writing it channels-last
    /// into a contiguous output: element (n, p, c) of the channels-last order at the place of element (n, c, p).</summary>
    public static int[] Apply(int[] y, int n, int channels, int plane)
    {
        var buffer = new int[y.Length];
        for (int b = 0; b < n; b++)
            for (int c = 0; c < channels; c++)
                for (int p = 0; p < plane; p++)
                    buffer[(b * plane + p) * channels + c] = y[(b * channels + c) * plane + p];
        return buffer;
    }
}
