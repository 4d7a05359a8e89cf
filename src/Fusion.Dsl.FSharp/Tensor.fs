[<RequireQualifiedAccess; CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Fusion.Dsl.FSharp.Tensor

open System
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

[<CompiledName("Shape")>]
let shape (tensor: Tensor) = List.ofSeq tensor.Dimensions

[<CompiledName("Rank")>]
let rank (tensor: Tensor) = tensor.Rank

[<CompiledName("Count")>]
let count (tensor: Tensor) = tensor.Count

[<CompiledName("OfArray")>]
let ofArray (shape: int list) (data: float32 array) = Tensor.FromFloat32(ReadOnlySpan data, Array.ofList shape)

[<CompiledName("Zeros")>]
let zeros (shape: int list) = Tensor.Zeros(Array.ofList shape)

[<CompiledName("Full")>]
let full (value: float32) (shape: int list) = Tensor.Full(value, Array.ofList shape)

[<CompiledName("Randn")>]
let randn (seed: int) (shape: int list) = Init.Normal(Random seed, 1.0, Array.ofList shape)

[<CompiledName("ToArray")>]
let toArray (tensor: Tensor) = tensor.ToArray()

[<CompiledName("Item")>]
let item (index: int list) (tensor: Tensor) =
    let dims = tensor.Dimensions
    let index = Array.ofList index
    if index.Length <> dims.Length then
        invalidArg (nameof index) (sprintf "index %A has %d entries but the tensor of shape %s has %d dimensions"
                                      index index.Length (Tensor.ShapeString(tensor.Shape)) dims.Length)
    let mutable flat = 0
    for d in 0 .. dims.Length - 1 do
        let i = if index[d] < 0 then index[d] + dims[d] else index[d]
        if i < 0 || i >= dims[d] then
            invalidArg (nameof index) (sprintf "index %d is out of range for dimension %d of size %d" index[d] d dims[d])
        flat <- flat * dims[d] + i
    float32 tensor[flat]

[<CompiledName("Reshape")>]
let reshape (shape: int list) (tensor: Tensor) = tensor.Reshape(Array.ofList shape)

[<CompiledName("MaxAbsDiff")>]
let maxAbsDiff (a: Tensor) (b: Tensor) = a.MaxAbsDiff b
