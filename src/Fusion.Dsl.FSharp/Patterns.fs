[<AutoOpen>]
module Fusion.Dsl.FSharp.Patterns

open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers

let private conv transposed rank (m: Module) =
    match m with
    | :? Conv as c when c.Transposed = transposed && c.Rank = rank -> Some c
    | _ -> None

let private bn rank (m: Module) =
    match m with
    | :? BatchNorm as b when b.Rank = rank -> Some b
    | _ -> None

let private act kind (m: Module) =
    match m with
    | :? Activation as a when a.Kind = kind -> Some a
    | _ -> None

let private children (m: Module) = [ for c in m.Children -> c.Module ]

let (|Conv1d|_|) m = conv false 1 m
let (|Conv2d|_|) m = conv false 2 m
let (|Conv3d|_|) m = conv false 3 m
let (|ConvTranspose1d|_|) m = conv true 1 m
let (|ConvTranspose2d|_|) m = conv true 2 m
let (|ConvTranspose3d|_|) m = conv true 3 m

let (|ConvNd|_|) (m: Module) =
    match m with
    | :? Conv as c when not c.Transposed -> Some(c.Rank, c)
    | _ -> None

let (|ConvTransposeNd|_|) (m: Module) =
    match m with
    | :? Conv as c when c.Transposed -> Some(c.Rank, c)
    | _ -> None

let (|BatchNorm1d|_|) m = bn 1 m
let (|BatchNorm2d|_|) m = bn 2 m
let (|BatchNorm3d|_|) m = bn 3 m

let (|BatchNormNd|_|) (m: Module) =
    match m with
    | :? BatchNorm as b -> Some(b.Rank, b)
    | _ -> None

let (|Linear|_|) (m: Module) =
    match m with
    | :? Linear as l -> Some l
    | _ -> None

let (|ReLU|_|) m = act ActivationKind.ReLU m
let (|ReLU6|_|) m = act ActivationKind.ReLU6 m
let (|Hardswish|_|) m = act ActivationKind.Hardswish m
let (|Hardsigmoid|_|) m = act ActivationKind.Hardsigmoid m
let (|SiLU|_|) m = act ActivationKind.SiLU m

let (|Identity|_|) (m: Module) =
    match m with
    | :? Identity as i -> Some i
    | _ -> None

let (|Dropout|_|) (m: Module) =
    match m with
    | :? Dropout as d -> Some d
    | _ -> None

let (|Flatten|_|) (m: Module) =
    match m with
    | :? Flatten as f -> Some f
    | _ -> None

let (|MaxPool2d|_|) (m: Module) =
    match m with
    | :? MaxPool2d as p -> Some p
    | _ -> None

let (|AvgPool2d|_|) (m: Module) =
    match m with
    | :? AvgPool2d as p -> Some p
    | _ -> None

let (|AdaptiveAvgPool2d|_|) (m: Module) =
    match m with
    | :? AdaptiveAvgPool2d as p -> Some p
    | _ -> None

let (|Sequential|_|) (m: Module) =
    match m with
    | :? Sequential -> Some(children m)
    | _ -> None

let (|Fused|_|) (m: Module) =
    match m with
    | :? FusedModule as f -> Some(f.TypeName, children m)
    | _ -> None

let (|User|_|) (m: Module) =
    match m with
    | :? UserModule as u -> Some(u.TypeName, [ for c in u.Children -> c.Name, c.Module ])
    | _ -> None

let (|TypeName|_|) (name: string) (m: Module) = if m.TypeName = name then Some m else None

let (|Node|) (m: Module) = m.TypeName, m.Training, [ for c in m.Children -> c.Name, c.Module ]
