using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Cli.Commands;

/// <summary>
/// The instruction set whose paths the engine's kernels take in this process, as <c>fusion bench</c> reports it
/// (<c>"isa"</c> in <c>--json</c>): a benchmark's numbers mean little without it, and the same CPU gives different ones
/// under <c>DOTNET_EnableAVX512=0</c>.
/// </summary>
internal static class BenchIsa
{
    /// <summary>
    /// <c>"AVX-512"</c>, <c>"AVX2"</c> or <c>"scalar"</c>: the kernels (GEMM, Winograd, depthwise, pooling, epilogues)
    /// take their 512-bit paths where <see cref="Vector512.IsHardwareAccelerated"/> holds, their 256-bit ones where
    /// <see cref="Vector256.IsHardwareAccelerated"/> and <see cref="Avx2.IsSupported"/> do, and plain loops otherwise.
    /// <see cref="Avx512F.IsSupported"/> alone does not decide: the runtime may leave Vector512 unaccelerated on a CPU that
    /// has AVX-512 (a switch, or a part it judges to lose clock speed under 512-bit code), and the kernels follow
    /// Vector512 (see <see cref="Avx512Present"/>).
    /// </summary>
    public static string Current =>
        Vector512.IsHardwareAccelerated ? "AVX-512"
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported ? "AVX2"
        : "scalar";

    /// <summary>
    /// Whether the runtime reports AVX-512F at all (<see cref="Avx512F.IsSupported"/>): beside <see cref="Current"/>, an
    /// <c>"AVX2"</c> with this set says the CPU has AVX-512 that the engine does not use here.
    /// </summary>
    public static bool Avx512Present => Avx512F.IsSupported;
}
