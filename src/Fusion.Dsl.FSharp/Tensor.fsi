/// Tensors from F# without spans: `Tensor.zeros [1; 3; 32; 32]`, `x |> Tensor.shape` (an `int list` that `%A` prints),
/// `y |> Tensor.item [0; 5; 2; 2]`. Tensors are immutable; every function returns a new value or reads one.
[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Fusion.Dsl.FSharp.Tensor

open Fusion.Dsl.Tensors

/// The dimensions, outermost first (`[]` for a scalar), as PyTorch's `x.shape`.
[<CompiledName("Shape")>]
val shape: tensor: Tensor -> int list
/// Number of dimensions.
[<CompiledName("Rank")>]
val rank: tensor: Tensor -> int
/// Number of elements.
[<CompiledName("Count")>]
val count: tensor: Tensor -> int
/// A float32 tensor of the given shape holding a copy of `data` in row-major order; raises ArgumentException when
/// the element count does not match the shape.
[<CompiledName("OfArray")>]
val ofArray: shape: int list -> data: float32 array -> Tensor
/// A float32 tensor of zeros.
[<CompiledName("Zeros")>]
val zeros: shape: int list -> Tensor
/// A float32 tensor filled with `value`.
[<CompiledName("Full")>]
val full: value: float32 -> shape: int list -> Tensor
/// Standard-normal values drawn deterministically from `seed` (the same seed gives the same bits; not torch.randn's stream).
[<CompiledName("Randn")>]
val randn: seed: int -> shape: int list -> Tensor
/// A copy of the float32 elements in row-major order.
[<CompiledName("ToArray")>]
val toArray: tensor: Tensor -> float32 array
/// The element at a multi-dimensional index (`[n; c; h; w]`; a negative entry counts from the end, as in PyTorch), as a float;
/// raises ArgumentException naming the dimension when the index has the wrong length or is out of range.
[<CompiledName("Item")>]
val item: index: int list -> tensor: Tensor -> float32
/// The same elements with another shape (one entry may be -1, as in `torch.reshape`).
[<CompiledName("Reshape")>]
val reshape: shape: int list -> tensor: Tensor -> Tensor
/// The largest absolute element-wise difference (same shape required).
[<CompiledName("MaxAbsDiff")>]
val maxAbsDiff: a: Tensor -> b: Tensor -> float
