/// Forward passes through an engine session opened by `Model.session`: `session |> Session.run x`.
[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Session

open Fusion.Dsl.Engine
open Fusion.Dsl.Tensors

/// Runs the session's model on a batch, with the bits `Model.forward` gives; the packs and buffers of earlier passes
/// are reused. Raises ObjectDisposedException once the session is disposed, ForwardException when the input does not fit.
[<CompiledName("Run")>]
val inline run: input: Tensor -> session: EngineSession -> Tensor
