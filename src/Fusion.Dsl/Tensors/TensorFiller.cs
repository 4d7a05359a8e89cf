namespace Fusion.Dsl.Tensors;

/// <summary>
/// Writes the elements of a new tensor (see <see cref="Tensor.Create"/>). The span cannot outlive the call (it is a
/// <c>ref struct</c>), so the tensor's storage is never reachable from outside once built: immutability holds without a copy.
/// </summary>
/// <param name="elements">The tensor's elements in row-major order, zero on entry.</param>
public delegate void TensorFiller(Span<float> elements);
