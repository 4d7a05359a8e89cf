[<RequireQualifiedAccess>]
module Fusion.Dsl.FSharp.Session

open Fusion.Dsl.Engine
open Fusion.Dsl.Tensors

[<CompiledName("Run")>]
let inline run (input: Tensor) (session: EngineSession) = session.Run input
