/// Active patterns over every module kind of the algebra, so that a rule reads as an F# match:
/// `function [Conv2d c; BatchNorm2d bn; ReLU _] -> Some (...) | _ -> None`.
/// Each pattern matches exactly one PyTorch type name (Conv2d does not match ConvTranspose2d or Conv1d).
[<AutoOpen>]
module Fusion.Dsl.FSharp.Patterns

open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers

/// Matches `Conv1d`.
val (|Conv1d|_|): Module -> Conv option
/// Matches `Conv2d`.
val (|Conv2d|_|): Module -> Conv option
/// Matches `Conv3d`.
val (|Conv3d|_|): Module -> Conv option
/// Matches `ConvTranspose1d`.
val (|ConvTranspose1d|_|): Module -> Conv option
/// Matches `ConvTranspose2d`.
val (|ConvTranspose2d|_|): Module -> Conv option
/// Matches `ConvTranspose3d`.
val (|ConvTranspose3d|_|): Module -> Conv option
/// Matches any non-transposed convolution, with its rank.
val (|ConvNd|_|): Module -> (int * Conv) option
/// Matches any transposed convolution, with its rank.
val (|ConvTransposeNd|_|): Module -> (int * Conv) option
/// Matches `BatchNorm1d`.
val (|BatchNorm1d|_|): Module -> BatchNorm option
/// Matches `BatchNorm2d`.
val (|BatchNorm2d|_|): Module -> BatchNorm option
/// Matches `BatchNorm3d`.
val (|BatchNorm3d|_|): Module -> BatchNorm option
/// Matches any BatchNorm, with its rank.
val (|BatchNormNd|_|): Module -> (int * BatchNorm) option
/// Matches `Linear`.
val (|Linear|_|): Module -> Linear option
/// Matches `ReLU`.
val (|ReLU|_|): Module -> Activation option
/// Matches `ReLU6`.
val (|ReLU6|_|): Module -> Activation option
/// Matches `Hardswish`.
val (|Hardswish|_|): Module -> Activation option
/// Matches `Hardsigmoid`.
val (|Hardsigmoid|_|): Module -> Activation option
/// Matches `SiLU`.
val (|SiLU|_|): Module -> Activation option
/// Matches `Identity`.
val (|Identity|_|): Module -> Identity option
/// Matches `Dropout`.
val (|Dropout|_|): Module -> Dropout option
/// Matches `Flatten`.
val (|Flatten|_|): Module -> Flatten option
/// Matches `MaxPool2d`.
val (|MaxPool2d|_|): Module -> MaxPool2d option
/// Matches `AvgPool2d`.
val (|AvgPool2d|_|): Module -> AvgPool2d option
/// Matches `AdaptiveAvgPool2d`.
val (|AdaptiveAvgPool2d|_|): Module -> AdaptiveAvgPool2d option
/// Matches `Sequential`, giving its children in order.
val (|Sequential|_|): Module -> Module list option
/// Matches a fused group (PyTorch's intrinsic kinds or this project's), giving its type name and parts.
val (|Fused|_|): Module -> (string * Module list) option
/// Matches a user container, giving its type name and named children.
val (|User|_|): Module -> (string * (string * Module) list) option
/// Matches any module by PyTorch type name, e.g. `TypeName "Conv2d"`.
val (|TypeName|_|): name: string -> Module -> Module option
/// Splits any module into its kind name, training flag and named children.
val (|Node|): Module -> string * bool * (string * Module) list
