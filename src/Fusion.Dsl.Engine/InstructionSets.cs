using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Fusion.Dsl.Engine;

/// <summary>
/// Which instruction set the engine's kernels take in this process: one public answer for the benchmarks' reports (a
/// number means little without it, and the same CPU gives different ones under <c>DOTNET_EnableAVX512=0</c>) and the
/// kernels themselves.
/// </summary>
public static class InstructionSets
{
    /// <summary>
    /// <c>"AVX-512"</c>, <c>"AVX2"</c> or <c>"scalar"</c>: the float kernels (GEMM, Winograd, depthwise, pooling, epilogues)
    /// take their 512-bit paths where <see cref="Vector512.IsHardwareAccelerated"/> holds, their 256-bit ones where
    /// <see cref="Vector256.IsHardwareAccelerated"/> and <see cref="Avx2.IsSupported"/> do, and plain loops otherwise.
    /// <see cref="Avx512F.IsSupported"/> alone does not decide: the runtime may leave Vector512 unaccelerated on a CPU that
    /// has AVX-512 (a switch, or a part it judges to lose clock speed under 512-bit code), and the kernels follow
    /// Vector512 (see <see cref="Avx512Present"/>).
    /// </summary>
    public static string Float =>
        Vector512.IsHardwareAccelerated ? "AVX-512"
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported ? "AVX2"
        : "scalar";

    /// <summary>
    /// <c>"AVX-512BW"</c>, <c>"AVX2"</c> or <c>"scalar"</c>: the int8 kernels' path, which needs AVX-512BW (or AVX2) for
    /// its byte multiply-adds besides the accelerated vector width.
    /// </summary>
    public static string Int8 =>
        Vector512.IsHardwareAccelerated && Avx512BW.IsSupported ? "AVX-512BW"
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported ? "AVX2"
        : "scalar";

    /// <summary>
    /// Whether the runtime reports AVX-512F at all (<see cref="Avx512F.IsSupported"/>): beside <see cref="Float"/>, an
    /// <c>"AVX2"</c> with this set says the CPU has AVX-512 that the engine does not use here.
    /// </summary>
    public static bool Avx512Present => Avx512F.IsSupported;
}
