/// FsCheck 3 generators of valid models, matching inputs and fuse lists, for property tests of fusion rules.
/// A model is generated as a small description (`ModelSpec`) and built from it, so that shrinking the description
/// shrinks the model and every shrunk candidate is still a valid model: `ModelSpec.shrink` only proposes descriptions
/// whose tensor shapes are valid through the whole model. Fuse lists are chosen from the description by a `pick`
/// number, so they stay consistent with the model while it shrinks.
///
/// `Prop.forAll ModelGen.arbFuseCase (fun case -> ...)` is the usual entry point; user rules can reuse
/// `ModelSpec.chains` to find their own patterns in generated models.
namespace Fusion.Dsl.FSharp

open FsCheck
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors

/// The `padding` argument of a generated convolution.
[<RequireQualifiedAccess>]
type PaddingSpec =
    /// Explicit amounts, one per spatial dimension.
    | Amounts of int list
    /// `padding='same'` (stride 1 only).
    | Same
    /// `padding='valid'`.
    | Valid

/// A Conv1d/2d/3d or ConvTranspose1d/2d/3d: PyTorch's constructor arguments, one list entry per spatial dimension;
/// the weight and bias are drawn with PyTorch's default initialisation from `Seed`.
type ConvSpec =
    { Rank: int
      Transposed: bool
      InChannels: int
      OutChannels: int
      Kernel: int list
      Stride: int list
      Padding: PaddingSpec
      Dilation: int list
      Groups: int
      Bias: bool
      PaddingMode: PaddingMode
      OutputPadding: int list
      Seed: int }

/// A BatchNorm1d/2d/3d; its affine parameters, running statistics and batch counter are drawn from `Seed`
/// (gamma of either sign, running variances from 0.05 to 3).
type BatchNormSpec =
    { Rank: int
      Features: int
      Eps: float
      Momentum: float option
      Affine: bool
      TrackRunningStats: bool
      Seed: int }

/// A Linear layer; weight and bias drawn with PyTorch's default initialisation from `Seed`.
type LinearSpec =
    { InFeatures: int
      OutFeatures: int
      Bias: bool
      Seed: int }

/// One layer or container of a generated model.
[<RequireQualifiedAccess>]
type LayerSpec =
    /// A convolution of any rank and kind.
    | Conv of ConvSpec
    /// A BatchNorm.
    | BatchNorm of BatchNormSpec
    /// A Linear layer (on `[N, features]` only).
    | Linear of LinearSpec
    /// `nn.ReLU()`.
    | ReLU
    /// `nn.Flatten()` (start_dim 1).
    | Flatten
    /// A nested `nn.Sequential` (children "0", "1", ...).
    | Sequential of LayerSpec list
    /// A user container `Residual` computing `body(x) + shortcut(x)` (the shortcut is the identity when empty), then
    /// its `relu` child when `relu` is true. Children: "body" and "shortcut" (Sequentials, the latter only when
    /// non-empty) and "relu".
    | Residual of body: LayerSpec list * shortcut: LayerSpec list * relu: bool

/// A generated model: the root is a user container `GeneratedNet` with children "0", "1", ... and a forward graph.
/// With `Traced` the root graph calls every leaf by its full path, as torch.fx traces a model (the residual blocks then
/// have no graph of their own, and the model can be written to the fixture format); otherwise the root graph calls its
/// children in order and each residual block has its own forward graph.
type ModelSpec =
    { /// `[N, C, *spatial]` or `[N, features]`; N is at least 2 so that batch statistics exist.
      InputShape: int list
      Layers: LayerSpec list
      Traced: bool
      /// Seed of the input tensor.
      Seed: int }

/// A model description with a number that chooses the fuse list (see `FuseLists`); shrinking keeps the number,
/// so the fuse list is recomputed for each smaller model and stays valid for it.
type FuseCase =
    { Model: ModelSpec
      Pick: int }

/// An invalid `modules_to_fuse` for a model and the refusal it must get.
type InvalidFuse =
    { /// What is wrong, for the failure report.
      Problem: string
      /// The argument as `Fuser.FuseModulesRaw` takes it: names (strings) or lists of names; valid groups may come first.
      ModulesToFuse: obj list
      /// Modules whose training flag is flipped before fusing (to build a group in mixed modes).
      FlipModePaths: string list
      /// The `FusionException.Kind` the refusal must have.
      Expected: FusionErrorKind }

/// Shapes, building and shrinking of model descriptions.
[<RequireQualifiedAccess>]
module ModelSpec =
    /// The PyTorch type name a leaf layer builds (`Conv2d`, `ConvTranspose1d`, `BatchNorm3d`, `Linear`, `ReLU`,
    /// `Flatten`), or None for a container.
    val kindOf: layer: LayerSpec -> string option
    /// The output shape of `layer` on an input of shape `input`, or None when the layer is invalid or does not fit it
    /// (channels, rank, sizes, padding-mode limits, groups, `same` with a stride, output_padding, ...).
    val layerOutputShape: input: int list -> layer: LayerSpec -> int list option
    /// The model's output shape, or None when the description is not a valid model for its input.
    val outputShape: spec: ModelSpec -> int list option
    /// Whether the description builds a model that runs on its input.
    val isValid: spec: ModelSpec -> bool
    /// Number of layers and containers in the description.
    val size: spec: ModelSpec -> int
    /// Builds the model, in eval mode. Building twice gives structurally equal, distinct objects.
    val build: spec: ModelSpec -> Module
    /// The input tensor (normal values from the spec's seed).
    val input: spec: ModelSpec -> Tensor
    /// Every run of consecutive sibling leaves whose kinds match one of PyTorch's default fusion patterns, as
    /// (dotted paths, type names); runs may overlap (Conv-BN and Conv-BN-ReLU at the same place).
    val chains: spec: ModelSpec -> (string list * string list) list
    /// How PyTorch's default rules refuse fusing the chain at `paths` (QAT or eval, model in training mode or not),
    /// or None when they fuse it; computed from the description alone.
    val refusal: isQat: bool -> training: bool -> spec: ModelSpec -> paths: string list -> FusionErrorKind option
    /// The description with every BatchNorm replaced by `f` of it (channels must stay the same to keep it valid),
    /// e.g. `ModelSpec.mapBatchNorms (fun b -> { b with TrackRunningStats = true })`.
    val mapBatchNorms: f: (BatchNormSpec -> BatchNormSpec) -> spec: ModelSpec -> ModelSpec
    /// Smaller valid descriptions: layers removed, containers replaced by their contents, hyperparameters moved to
    /// their defaults, the input made smaller. Every candidate is valid.
    val shrink: spec: ModelSpec -> ModelSpec seq

/// Fuse lists chosen from a model description by a pick number.
[<RequireQualifiedAccess>]
module FuseLists =
    /// Disjoint groups that PyTorch's default rules fuse (QAT or eval, model in training mode or not), in a random
    /// order; empty when the model has no such chain. The same pick and description give the same list.
    val valid: isQat: bool -> training: bool -> pick: int -> spec: ModelSpec -> string list list
    /// An invalid list for the model: wrong order, unknown or malformed names, an empty list or group, names mixed
    /// with lists, a group in mixed modes, or a chain a rule guard refuses; valid groups may precede the bad one.
    val invalid: isQat: bool -> training: bool -> pick: int -> spec: ModelSpec -> InvalidFuse
    /// The model with the training flag of every module in `invalid.FlipModePaths` flipped (the model to fuse).
    val prepare: invalid: InvalidFuse -> model: Module -> Module

/// FsCheck generators and arbitraries.
[<RequireQualifiedAccess>]
module ModelGen =
    /// Size-controlled model descriptions (`Gen.sized`: each nesting level gets half the size): convolutions of every
    /// rank and kind, BatchNorm, Linear, ReLU, Flatten, nested Sequentials and residual graph containers, over an input of
    /// rank 1 to 3 spatial dimensions or a flat one. Channels and spatial sizes are tracked so the model fits its input,
    /// and tensors stay small (at most 8 channels, spatial sizes of at most 12 / 6x6 / 4x4x4).
    val modelSpec: Gen<ModelSpec>
    /// `modelSpec` with `ModelSpec.shrink`.
    val arbModelSpec: Arbitrary<ModelSpec>
    /// A description and a pick number.
    val fuseCase: Gen<FuseCase>
    /// `fuseCase`, shrinking the description and keeping the pick.
    val arbFuseCase: Arbitrary<FuseCase>
    /// A layer BatchNorm can fold into (Conv, ConvTranspose of any rank, or Linear) with a BatchNorm over its outputs
    /// (for Linear sometimes a single broadcast feature), eval mode, tracked statistics.
    val foldPair: Gen<LayerSpec * BatchNormSpec>
    /// Builds a BatchNorm from its description (eval mode).
    val buildBatchNorm: spec: BatchNormSpec -> BatchNorm
    /// Builds a layer or container from its description (eval mode; residual blocks with their own forward graph).
    val buildLayer: layer: LayerSpec -> Module
