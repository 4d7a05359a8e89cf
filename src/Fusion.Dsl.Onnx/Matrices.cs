using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Onnx;

/// <summary>Matrix helpers the import and the write-back share (ONNX stores a Linear's weight as <c>Wᵀ</c> for MatMul
/// and for a Gemm without <c>transB</c>).</summary>
internal static class Matrices
{
    /// <summary>The transpose of a float32 matrix, as a new tensor.</summary>
    public static Tensor Transpose(Tensor m)
    {
        var (r, c) = (m.Shape[0], m.Shape[1]);
        var src = m.Float32;
        var dst = new float[src.Length];
        for (var i = 0; i < r; i++)
            for (var j = 0; j < c; j++) dst[j * r + i] = src[i * c + j];
        return Tensor.FromFloat32(dst, c, r);
    }
}
