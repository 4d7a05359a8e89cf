namespace Fusion.Dsl.FSharp

open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Graphs

/// PyTorch-style constructors with PyTorch's argument names and defaults, so that
/// `nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)` reads `Nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=false)`.
/// A thin layer over the C# `Fusion.Dsl.Nn`: every argument check is the layer's own.
/// Size arguments (`kernel_size`, `stride`, `padding`, `dilation`, `output_size`) take an int or a tuple
/// (`kernel_size = (3, 1)`); a convolution's `padding` also takes "same" or "valid".
/// Weights are drawn with PyTorch's default initialisation from `seed` (default 0), deterministically.
/// New modules start in eval mode (see docs/guide.md); `Model.train` switches.
[<AbstractClass; Sealed>]
type Nn =
    /// `nn.Conv1d`.
    static member Conv1d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: ConvPadding *
        ?dilation: IntOrTuple * ?groups: int * ?bias: bool * ?padding_mode: string * ?seed: int -> Module
    /// `nn.Conv2d`.
    static member Conv2d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: ConvPadding *
        ?dilation: IntOrTuple * ?groups: int * ?bias: bool * ?padding_mode: string * ?seed: int -> Module
    /// `nn.Conv3d`.
    static member Conv3d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: ConvPadding *
        ?dilation: IntOrTuple * ?groups: int * ?bias: bool * ?padding_mode: string * ?seed: int -> Module
    /// `nn.ConvTranspose1d` (`padding_mode` last, so that existing positional calls keep their meaning; PyTorch takes
    /// only `"zeros"` for a transposed convolution).
    static member ConvTranspose1d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: IntOrTuple *
        ?output_padding: IntOrTuple * ?groups: int * ?bias: bool * ?dilation: IntOrTuple * ?seed: int * ?padding_mode: string -> Module
    /// `nn.ConvTranspose2d` (`padding_mode` last, so that existing positional calls keep their meaning; PyTorch takes
    /// only `"zeros"` for a transposed convolution).
    static member ConvTranspose2d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: IntOrTuple *
        ?output_padding: IntOrTuple * ?groups: int * ?bias: bool * ?dilation: IntOrTuple * ?seed: int * ?padding_mode: string -> Module
    /// `nn.ConvTranspose3d` (`padding_mode` last, so that existing positional calls keep their meaning; PyTorch takes
    /// only `"zeros"` for a transposed convolution).
    static member ConvTranspose3d:
        in_channels: int * out_channels: int * kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: IntOrTuple *
        ?output_padding: IntOrTuple * ?groups: int * ?bias: bool * ?dilation: IntOrTuple * ?seed: int * ?padding_mode: string -> Module
    /// `nn.BatchNorm1d` (weight 1, bias 0, running mean 0, variance 1); `momentum = None` is PyTorch's `momentum=None`.
    static member BatchNorm1d:
        num_features: int * ?eps: float * ?momentum: float option * ?affine: bool * ?track_running_stats: bool -> Module
    /// `nn.BatchNorm2d`.
    static member BatchNorm2d:
        num_features: int * ?eps: float * ?momentum: float option * ?affine: bool * ?track_running_stats: bool -> Module
    /// `nn.BatchNorm3d`.
    static member BatchNorm3d:
        num_features: int * ?eps: float * ?momentum: float option * ?affine: bool * ?track_running_stats: bool -> Module
    /// `nn.Linear`.
    static member Linear: in_features: int * out_features: int * ?bias: bool * ?seed: int -> Module
    /// `nn.ReLU`.
    static member ReLU: ?inplace: bool -> Module
    /// `nn.ReLU6`.
    static member ReLU6: ?inplace: bool -> Module
    /// `nn.Hardswish`.
    static member Hardswish: ?inplace: bool -> Module
    /// `nn.Hardsigmoid`.
    static member Hardsigmoid: ?inplace: bool -> Module
    /// `nn.SiLU`.
    static member SiLU: ?inplace: bool -> Module
    /// `nn.Identity`.
    static member Identity: unit -> Module
    /// `nn.Dropout`.
    static member Dropout: ?p: float * ?inplace: bool -> Module
    /// `nn.Flatten`.
    static member Flatten: ?start_dim: int * ?end_dim: int -> Module
    /// `nn.MaxPool2d`; `stride` defaults to the kernel size. Sizes keep the form given, as PyTorch prints them.
    static member MaxPool2d:
        kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: IntOrTuple * ?dilation: IntOrTuple * ?ceil_mode: bool -> Module
    /// `nn.AvgPool2d`; `stride` defaults to the kernel size.
    static member AvgPool2d:
        kernel_size: IntOrTuple * ?stride: IntOrTuple * ?padding: IntOrTuple * ?ceil_mode: bool * ?count_include_pad: bool -> Module
    /// `nn.AdaptiveAvgPool2d`: `1` or `(1, 1)`.
    static member AdaptiveAvgPool2d: output_size: IntOrTuple -> Module
    /// `nn.Sequential(*modules)`: children named "0", "1", ...
    static member Sequential: modules: Module list -> Module
    /// `nn.Sequential(OrderedDict(...))`: children with the given names, run in order.
    static member Sequential: named: (string * Module) list -> Module
    /// A user container (an `nn.Module` subclass) with named children and a forward graph built by `forward`,
    /// which receives a `GraphBuilder` (call children by path, add values) and returns the graph.
    static member Module: typeName: string * children: (string * Module) list * forward: (GraphBuilder -> Graph) -> Module

/// Composition of modules into a Sequential.
[<AutoOpen>]
module NnOperators =
    /// `a >-> b`: a Sequential running a then b; a Sequential on the left built by `>->` is extended rather than nested.
    val (>->): a: Module -> b: Module -> Module
