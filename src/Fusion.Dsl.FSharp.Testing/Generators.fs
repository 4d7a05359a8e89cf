namespace Fusion.Dsl.FSharp

open System
open FsCheck
open FsCheck.FSharp
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors

[<RequireQualifiedAccess>]
type PaddingSpec =
    | Amounts of int list
    | Same
    | Valid

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

type BatchNormSpec =
    { Rank: int
      Features: int
      Eps: float
      Momentum: float option
      Affine: bool
      TrackRunningStats: bool
      Seed: int }

type LinearSpec =
    { InFeatures: int
      OutFeatures: int
      Bias: bool
      Seed: int }

[<RequireQualifiedAccess>]
type LayerSpec =
    | Conv of ConvSpec
    | BatchNorm of BatchNormSpec
    | Linear of LinearSpec
    | ReLU
    | Flatten
    | Sequential of LayerSpec list
    | Residual of body: LayerSpec list * shortcut: LayerSpec list * relu: bool

type ModelSpec =
    { InputShape: int list
      Layers: LayerSpec list
      Traced: bool
      Seed: int }

type FuseCase =
    { Model: ModelSpec
      Pick: int }

type InvalidFuse =
    { Problem: string
      ModulesToFuse: obj list
      FlipModePaths: string list
      Expected: FusionErrorKind }

[<RequireQualifiedAccess>]
module ModelSpec =
    let kindOf layer =
        match layer with
        | LayerSpec.Conv c -> Some(sprintf "%s%dd" (if c.Transposed then "ConvTranspose" else "Conv") c.Rank)
        | LayerSpec.BatchNorm b -> Some(sprintf "BatchNorm%dd" b.Rank)
        | LayerSpec.Linear _ -> Some "Linear"
        | LayerSpec.ReLU -> Some "ReLU"
        | LayerSpec.Flatten -> Some "Flatten"
        | LayerSpec.Sequential _
        | LayerSpec.Residual _ -> None

    let private allSome (xs: 'a option list) =
        if List.forall Option.isSome xs then Some(List.map Option.get xs) else None

    /// Output spatial sizes of a convolution: the core's lengths (SlidingWindow, which the conformance fixtures check
    /// against PyTorch) within the argument and padding-mode limits restated here.
    let private convOutput (c: ConvSpec) (input: int list) =
        match input with
        | n :: ch :: spatial when List.length spatial = c.Rank && ch = c.InChannels ->
            let r = c.Rank
            let lists = [ c.Kernel; c.Stride; c.Dilation; c.OutputPadding ]
            let shapeOk =
                r >= 1 && r <= 3 && lists |> List.forall (fun l -> List.length l = r)
                && c.InChannels > 0 && c.OutChannels > 0 && c.Groups > 0
                && c.InChannels % c.Groups = 0 && c.OutChannels % c.Groups = 0
                && List.forall (fun x -> x > 0) (c.Kernel @ c.Stride @ c.Dilation)
                && List.forall (fun x -> x >= 0) c.OutputPadding
            let paddingOk =
                match c.Padding with
                | PaddingSpec.Amounts a -> List.length a = r && List.forall (fun x -> x >= 0) a
                | PaddingSpec.Same -> List.forall ((=) 1) c.Stride
                | PaddingSpec.Valid -> true
            let transposedOk =
                if c.Transposed then
                    c.PaddingMode = PaddingMode.Zeros
                    && (match c.Padding with PaddingSpec.Amounts _ -> true | _ -> false)
                    && List.forall2 (fun op (s, d) -> op < max s d) c.OutputPadding (List.zip c.Stride c.Dilation)
                else List.forall ((=) 0) c.OutputPadding
            if not (shapeOk && paddingOk && transposedOk) then None
            else
                let dim i =
                    let l, k, s, d, op = spatial.[i], c.Kernel.[i], c.Stride.[i], c.Dilation.[i], c.OutputPadding.[i]
                    let span = d * (k - 1)
                    let left, right =
                        match c.Padding with
                        | PaddingSpec.Amounts a -> a.[i], a.[i]
                        | PaddingSpec.Valid -> 0, 0
                        | PaddingSpec.Same -> span / 2, span - span / 2
                    if c.Transposed then
                        let o = SlidingWindow.ConvTransposeOutput(l, k, s, left, right, d, op)
                        if o >= 1L then Some(int o) else None
                    else
                        let o = SlidingWindow.ConvOutput(l, k, s, left, right, d)
                        let pad = max left right
                        if o < 1L then None
                        elif c.PaddingMode = PaddingMode.Reflect && pad >= l then None
                        elif c.PaddingMode = PaddingMode.Circular && pad > l then None
                        else Some(int o)
                allSome [ for i in 0 .. r - 1 -> dim i ] |> Option.map (fun sp -> n :: c.OutChannels :: sp)
        | _ -> None

    let rec layerOutputShape (input: int list) (layer: LayerSpec) : int list option =
        match layer with
        | LayerSpec.Conv c -> convOutput c input
        | LayerSpec.BatchNorm b ->
            match input with
            | _ :: ch :: spatial ->
                let rankOk = if b.Rank = 1 then List.length spatial <= 1 else b.Rank <= 3 && List.length spatial = b.Rank
                // Training mode (QAT) normalises with batch statistics, which need more than one value per channel.
                let perChannel = List.fold (*) 1 input / max ch 1
                if b.Rank >= 1 && rankOk && b.Features > 0 && ch = b.Features && b.Eps > 0.0 && perChannel > 1 then Some input
                else None
            | _ -> None
        | LayerSpec.Linear l ->
            match input with
            | [ n; f ] when f = l.InFeatures && l.InFeatures > 0 && l.OutFeatures > 0 -> Some [ n; l.OutFeatures ]
            | _ -> None
        | LayerSpec.ReLU -> Some input
        | LayerSpec.Flatten ->
            match input with
            | n :: (_ :: _ as rest) -> Some [ n; List.fold (*) 1 rest ]
            | _ -> None
        | LayerSpec.Sequential layers -> throughLayers input layers
        | LayerSpec.Residual(body, shortcut, _) ->
            match throughLayers input body, throughLayers input shortcut with
            | Some b, Some s when b = s -> Some b
            | _ -> None

    and internal throughLayers (input: int list) (layers: LayerSpec list) =
        layers |> List.fold (fun shape l -> shape |> Option.bind (fun s -> layerOutputShape s l)) (Some input)

    let private inputOk (shape: int list) =
        match shape with
        | n :: _ :: _ -> n >= 2 && List.length shape <= 5 && List.forall (fun d -> d >= 1) shape
        | _ -> false

    let outputShape spec = if inputOk spec.InputShape then throughLayers spec.InputShape spec.Layers else None

    let isValid spec = (outputShape spec).IsSome

    let size spec =
        let rec count layers =
            layers
            |> List.sumBy (fun l ->
                match l with
                | LayerSpec.Sequential inner -> 1 + count inner
                | LayerSpec.Residual(b, s, relu) -> 1 + count b + count s + (if relu then 1 else 0)
                | _ -> 1)
        count spec.Layers

    // ---- building ---------------------------------------------------------------------------------------------

    let internal buildBatchNorm (b: BatchNormSpec) =
        let rng = Random(b.Seed)
        let draw lo hi = float32 (lo + (hi - lo) * rng.NextDouble())
        // Every tensor is drawn whatever the flags, so a flag change does not reshuffle the others.
        let gamma = Tensor.Generate((fun _ -> let g = draw 0.5 1.5 in if rng.Next 4 = 0 then -g else g), b.Features)
        let beta = Tensor.Generate((fun _ -> draw -0.5 0.5), b.Features)
        let mean = Tensor.Generate((fun _ -> draw -0.5 0.5), b.Features)
        let var = Tensor.Generate((fun _ -> draw 0.05 3.0), b.Features)
        let count = Tensor.ScalarInt64(int64 (rng.Next(0, 1000)))
        let keep flag (t: Tensor) : Tensor | null = if flag then t else null
        BatchNorm.Create(
            b.Rank, b.Features, eps = b.Eps, momentum = Option.toNullable b.Momentum, affine = b.Affine,
            trackRunningStats = b.TrackRunningStats,
            weight = keep b.Affine gamma, bias = keep b.Affine beta,
            runningMean = keep b.TrackRunningStats mean, runningVar = keep b.TrackRunningStats var,
            numBatchesTracked = keep b.TrackRunningStats count)

    let private buildConv (c: ConvSpec) : Module =
        let padding =
            match c.Padding with
            | PaddingSpec.Amounts a -> ConvPadding.Explicit(Array.ofList a)
            | PaddingSpec.Same -> ConvPadding.Same
            | PaddingSpec.Valid -> ConvPadding.Valid
        Conv.Create(
            c.Rank, c.InChannels, c.OutChannels, Array.ofList c.Kernel, stride = Array.ofList c.Stride, padding = padding,
            dilation = Array.ofList c.Dilation, groups = c.Groups, bias = c.Bias, paddingMode = c.PaddingMode,
            transposed = c.Transposed, outputPadding = Array.ofList c.OutputPadding, seed = c.Seed)

    /// The graph of a residual block that has its own forward.
    let private residualGraph (hasShortcut: bool) (relu: bool) =
        let b = GraphBuilder()
        let x = b.Input()
        let y = b.Call("body", x)
        let s = if hasShortcut then b.Call("shortcut", x) else x
        let z = b.AddValues(y, s)
        b.Output(if relu then b.Call("relu", z) else z)

    let rec internal buildLayer (traced: bool) (layer: LayerSpec) : Module =
        match layer with
        | LayerSpec.Conv c -> buildConv c
        | LayerSpec.BatchNorm b -> buildBatchNorm b
        | LayerSpec.Linear l -> Linear.Create(l.InFeatures, l.OutFeatures, bias = l.Bias, seed = l.Seed)
        | LayerSpec.ReLU -> Activation.Create ActivationKind.ReLU
        | LayerSpec.Flatten -> Flatten.Create()
        | LayerSpec.Sequential layers -> buildSequential traced layers
        | LayerSpec.Residual(body, shortcut, relu) ->
            let children =
                [ yield NamedModule("body", buildSequential traced body)
                  if not shortcut.IsEmpty then yield NamedModule("shortcut", buildSequential traced shortcut)
                  if relu then yield NamedModule("relu", Activation.Create ActivationKind.ReLU) ]
            let forward = if traced then null else residualGraph (not shortcut.IsEmpty) relu
            UserModule.Create("Residual", ModuleChildren.Create children, forward)

    and private buildSequential traced layers : Module =
        Sequential.Create(layers |> List.map (buildLayer traced) |> Array.ofList)

    /// torch.fx style: every leaf called by its full path, residual adds inlined.
    let rec private emitTraced (b: GraphBuilder) (path: string) (layer: LayerSpec) (x: GraphValue) : GraphValue =
        let run prefix layers x =
            layers |> List.indexed |> List.fold (fun v (i, l) -> emitTraced b (ModulePath.Join(prefix, string i)) l v) x
        match layer with
        | LayerSpec.Sequential layers -> run path layers x
        | LayerSpec.Residual(body, shortcut, relu) ->
            let y = run (ModulePath.Join(path, "body")) body x
            let s = if shortcut.IsEmpty then x else run (ModulePath.Join(path, "shortcut")) shortcut x
            let z = b.AddValues(y, s)
            if relu then b.Call(ModulePath.Join(path, "relu"), z) else z
        | _ -> b.Call(path, x)

    let build spec : Module =
        let children = spec.Layers |> List.mapi (fun i l -> NamedModule(string i, buildLayer spec.Traced l))
        let b = GraphBuilder()
        let x = b.Input()
        let y =
            spec.Layers
            |> List.indexed
            |> List.fold (fun v (i, l) -> if spec.Traced then emitTraced b (string i) l v else b.Call(string i, v)) x
        UserModule.Create("GeneratedNet", ModuleChildren.Create children, b.Output y)

    let input spec = Init.Normal(Random(spec.Seed), 1.0, Array.ofList spec.InputShape)

    // ---- chains -----------------------------------------------------------------------------------------------

    /// PyTorch's default fuser patterns (DEFAULT_OP_LIST_TO_FUSER_METHOD), written out independently of the rules.
    let private patterns =
        [ for n in 1..3 do
              let conv, bn = sprintf "Conv%dd" n, sprintf "BatchNorm%dd" n
              yield [ conv; bn ]
              yield [ conv; bn; "ReLU" ]
              yield [ conv; "ReLU" ]
              yield [ sprintf "ConvTranspose%dd" n; bn ]
          yield [ "Linear"; "BatchNorm1d" ]
          yield [ "Linear"; "ReLU" ]
          yield [ "BatchNorm2d"; "ReLU" ]
          yield [ "BatchNorm3d"; "ReLU" ] ]

    /// Every list of siblings run one after another, with their dotted paths.
    let rec private siblingLists (prefix: string) (layers: LayerSpec list) : (string * LayerSpec) list list =
        let named = layers |> List.mapi (fun i l -> ModulePath.Join(prefix, string i), l)
        named
        :: (named
            |> List.collect (fun (p, l) ->
                match l with
                | LayerSpec.Sequential inner -> siblingLists p inner
                | LayerSpec.Residual(body, shortcut, _) ->
                    siblingLists (ModulePath.Join(p, "body")) body @ (if shortcut.IsEmpty then [] else siblingLists (ModulePath.Join(p, "shortcut")) shortcut)
                | _ -> []))

    let internal leaves spec =
        siblingLists "" spec.Layers |> List.concat |> List.filter (fun (_, l) -> (kindOf l).IsSome)

    let internal containers spec =
        siblingLists "" spec.Layers |> List.concat |> List.filter (fun (_, l) -> (kindOf l).IsNone) |> List.map fst

    let chains spec =
        [ for siblings in siblingLists "" spec.Layers do
              let arr = Array.ofList siblings
              for i in 0 .. arr.Length - 1 do
                  for p in patterns do
                      if i + p.Length <= arr.Length then
                          let run = arr.[i .. i + p.Length - 1] |> List.ofArray
                          if run |> List.map (snd >> kindOf) = List.map Some p then yield List.map fst run, p ]

    let refusal isQat training spec (paths: string list) =
        let byPath = leaves spec |> dict
        let layers = paths |> List.map (fun p -> match byPath.TryGetValue p with | true, l -> Some l | _ -> None)
        match allSome layers with
        | None -> Some FusionErrorKind.MissingName
        | Some layers ->
            let kinds = layers |> List.map (kindOf >> Option.get)
            if not (List.contains kinds patterns) then Some FusionErrorKind.NoRule
            else
                match layers with
                | LayerSpec.Conv { Transposed = true } :: [ LayerSpec.BatchNorm bn ] ->
                    if isQat then Some FusionErrorKind.NoQatForm
                    elif training then Some FusionErrorKind.TrainingMode
                    elif not bn.TrackRunningStats then Some FusionErrorKind.NoRunningStats
                    else None
                | (LayerSpec.Conv _ | LayerSpec.Linear _) :: LayerSpec.BatchNorm bn :: _ ->
                    if not isQat && training then Some FusionErrorKind.TrainingMode
                    elif not bn.TrackRunningStats then Some FusionErrorKind.NoRunningStats
                    elif isQat && not bn.Affine then Some FusionErrorKind.NotAffine
                    else None
                | _ -> None

    let mapBatchNorms f spec =
        let rec map layer =
            match layer with
            | LayerSpec.BatchNorm b -> LayerSpec.BatchNorm(f b)
            | LayerSpec.Sequential layers -> LayerSpec.Sequential(List.map map layers)
            | LayerSpec.Residual(body, shortcut, relu) -> LayerSpec.Residual(List.map map body, List.map map shortcut, relu)
            | other -> other
        { spec with Layers = List.map map spec.Layers }

    // ---- shrinking --------------------------------------------------------------------------------------------

    let private ones (l: int list) = List.map (fun _ -> 1) l
    let private zeros (l: int list) = List.map (fun _ -> 0) l

    let private simplerConv (c: ConvSpec) =
        [ if c.Transposed then yield { c with Transposed = false; OutputPadding = zeros c.OutputPadding }
          if c.Groups <> 1 then yield { c with Groups = 1 }
          if c.Stride <> ones c.Stride then yield { c with Stride = ones c.Stride; OutputPadding = zeros c.OutputPadding }
          if c.Dilation <> ones c.Dilation then yield { c with Dilation = ones c.Dilation; OutputPadding = zeros c.OutputPadding }
          if c.Kernel <> ones c.Kernel then yield { c with Kernel = ones c.Kernel }
          if c.Padding <> PaddingSpec.Amounts(zeros c.Kernel) then yield { c with Padding = PaddingSpec.Amounts(zeros c.Kernel) }
          if c.PaddingMode <> PaddingMode.Zeros then yield { c with PaddingMode = PaddingMode.Zeros }
          if c.OutputPadding <> zeros c.OutputPadding then yield { c with OutputPadding = zeros c.OutputPadding }
          if c.Bias then yield { c with Bias = false } ]

    let private simplerBatchNorm (b: BatchNormSpec) =
        [ if b.Eps <> 1e-5 then yield { b with Eps = 1e-5 }
          if b.Momentum <> Some 0.1 then yield { b with Momentum = Some 0.1 }
          if not b.Affine then yield { b with Affine = true }
          if not b.TrackRunningStats then yield { b with TrackRunningStats = true } ]

    let rec private shrinkLayers (layers: LayerSpec list) : LayerSpec list seq =
        let arr = Array.ofList layers
        let replace i (xs: LayerSpec list) = List.ofArray arr.[.. i - 1] @ xs @ List.ofArray arr.[i + 1 ..]
        seq {
            for i in 0 .. arr.Length - 1 do
                yield replace i []
            for i in 0 .. arr.Length - 1 do
                match arr.[i] with
                | LayerSpec.Sequential inner ->
                    yield replace i inner
                    for inner' in shrinkLayers inner -> replace i [ LayerSpec.Sequential inner' ]
                | LayerSpec.Residual(body, shortcut, relu) ->
                    yield replace i body
                    if not shortcut.IsEmpty then yield replace i [ LayerSpec.Residual(body, [], relu) ]
                    if relu then yield replace i [ LayerSpec.Residual(body, shortcut, false) ]
                    for body' in shrinkLayers body -> replace i [ LayerSpec.Residual(body', shortcut, relu) ]
                    for shortcut' in shrinkLayers shortcut -> replace i [ LayerSpec.Residual(body, shortcut', relu) ]
                | LayerSpec.Conv c -> for c' in simplerConv c -> replace i [ LayerSpec.Conv c' ]
                | LayerSpec.BatchNorm b -> for b' in simplerBatchNorm b -> replace i [ LayerSpec.BatchNorm b' ]
                | LayerSpec.Linear l -> if l.Bias then yield replace i [ LayerSpec.Linear { l with Bias = false } ]
                | LayerSpec.ReLU
                | LayerSpec.Flatten -> ()
        }

    let shrink spec =
        seq {
            for layers in shrinkLayers spec.Layers -> { spec with Layers = layers }
            match spec.InputShape with
            | n :: c :: spatial ->
                for i in 0 .. spatial.Length - 1 do
                    if spatial.[i] > 1 then
                        yield { spec with InputShape = n :: c :: List.updateAt i (spatial.[i] - 1) spatial }
            | _ -> ()
        }
        |> Seq.filter isValid

[<RequireQualifiedAccess>]
module FuseLists =
    /// An entry of modules_to_fuse: a name or a list of names.
    let private item (x: 'a) : obj = nonNull (box x)

    let private overlaps (a: string list) (b: string list) = a |> List.exists (fun p -> List.contains p b)

    let private shuffle (rng: Random) xs = xs |> List.map (fun x -> rng.Next(), x) |> List.sortBy fst |> List.map snd

    /// Disjoint fusable chains, in random order, avoiding `exclude`; each kept with probability 3/4.
    let private choose (rng: Random) isQat training spec (exclude: string list) =
        ModelSpec.chains spec
        |> List.map fst
        |> List.filter (fun p -> ModelSpec.refusal isQat training spec p = None && not (overlaps p exclude))
        |> shuffle rng
        |> List.fold (fun chosen p -> if rng.Next 4 <> 0 && not (List.exists (overlaps p) chosen) then chosen @ [ p ] else chosen) []

    let valid isQat training pick spec =
        let rng = Random(pick)
        match choose rng isQat training spec [] with
        | [] ->
            // Fuse something whenever the model allows it.
            ModelSpec.chains spec
            |> List.map fst
            |> List.filter (fun p -> ModelSpec.refusal isQat training spec p = None)
            |> List.truncate 1
        | chosen -> chosen

    let invalid isQat training pick spec =
        let rng = Random(pick)
        let leafPaths = ModelSpec.leaves spec |> List.map fst
        let any () = if leafPaths.IsEmpty then "0" else leafPaths.[rng.Next leafPaths.Length]
        let chains = ModelSpec.chains spec |> List.map fst
        let groups (gs: string list list) = gs |> List.map item
        /// Valid groups placed before the bad one, so a refusal after some groups were fused is exercised.
        let prefix exclude = choose rng isQat training spec exclude |> List.truncate (rng.Next 3)
        let make problem (bad: obj) exclude flips expected =
            { Problem = problem
              ModulesToFuse = groups (prefix exclude) @ [ bad ]
              FlipModePaths = flips
              Expected = expected }
        let candidates =
            [ yield fun () ->
                  { Problem = "the list is empty"; ModulesToFuse = []; FlipModePaths = []; Expected = FusionErrorKind.InvalidGroups }
              yield fun () -> make "an empty group" (item List.empty<string>) [] [] FusionErrorKind.InvalidGroups
              yield fun () ->
                  let p = any ()
                  { Problem = "names mixed with lists"
                    ModulesToFuse = [ item p; item [ any () ] ]
                    FlipModePaths = []
                    Expected = FusionErrorKind.InvalidGroups }
              yield fun () -> let p = any () in make "a name repeated in a group" (item [ p; p ]) [ p ] [] FusionErrorKind.InvalidGroups
              yield fun () ->
                  let p = any ()
                  make "a name inside another name of the group" (item [ p; p + ".0" ]) [ p ] [] FusionErrorKind.InvalidGroups
              yield fun () ->
                  let p = any ()
                  make "a name with an empty segment" (item [ p + "..0" ]) [ p ] [] FusionErrorKind.InvalidGroups
              yield fun () -> make "an unknown name" (item [ "nosuch" ]) [] [] FusionErrorKind.MissingName
              yield fun () ->
                  let p = any ()
                  make "a name below a leaf layer" (item [ p + ".inner" ]) [ p ] [] FusionErrorKind.MissingName
              yield fun () ->
                  let count = spec.Layers.Length
                  make "a child index past the end" (item [ string (count + rng.Next 3) ]) [] [] FusionErrorKind.MissingName
              yield fun () -> let p = any () in make "a single module, which no rule fuses" (item [ p ]) [ p ] [] FusionErrorKind.NoRule
              for chain in chains do
                  yield fun () ->
                      make "a fusable chain in the wrong order" (item (List.rev chain)) chain [] FusionErrorKind.NoRule
                  yield fun () ->
                      let flipped = chain.[rng.Next chain.Length]
                      make (sprintf "a group in mixed modes (%s flipped)" flipped) (item chain) chain [ flipped ]
                          FusionErrorKind.MixedModes
                  match ModelSpec.refusal isQat training spec chain with
                  | Some kind ->
                      // Weighted up: guard refusals need a particular chain, so they would be rare among the other cases.
                      for _ in 1..6 do
                          yield fun () -> make (sprintf "a chain the rule guards refuse (%A)" kind) (item chain) chain [] kind
                  | None -> () ]
        candidates.[rng.Next candidates.Length] ()

    let prepare invalid model =
        invalid.FlipModePaths
        |> List.fold (fun (m: Module) path -> let target = ModulePath.Get(m, path) in ModulePath.Replace(m, path, target.WithTraining(not target.Training))) model

[<RequireQualifiedAccess>]
module ModelGen =
    /// Largest spatial size per dimension, so every tensor stays small.
    let private maxSpatial rank = match rank with | 1 -> 12 | 2 -> 6 | _ -> 4
    let private maxChannels = 8
    let private maxFeatures = 12
    let private seed = Gen.choose (0, 1_000_000)

    let private freq (choices: (int * 'a) list) = choices |> List.map (fun (w, x) -> w, Gen.constant x) |> Gen.frequency

    let private within (shape: int list) =
        match shape with
        | [ _; f ] -> f <= maxFeatures
        | _ :: c :: spatial -> c <= maxChannels && spatial |> List.forall (fun d -> d <= maxSpatial spatial.Length)
        | _ -> false

    /// A convolution on `channels` x `spatial`; with `preserve` its output keeps the spatial size (residual bodies).
    let private genConv (transposed: bool) (preserve: bool) (channels: int) (spatial: int list) : Gen<ConvSpec> =
        gen {
            let r = spatial.Length
            let divisors = [ 1 .. min channels 4 ] |> List.filter (fun g -> channels % g = 0)
            let! groups = Gen.frequency [ 4, Gen.constant 1; 2, Gen.elements divisors; 1, Gen.constant channels ]
            let! multiple = Gen.choose (1, max 1 (maxChannels / groups))
            let! dilation = Gen.listOfLength r (freq [ 3, 1; 1, 2 ])
            let! stride = if preserve then Gen.constant (List.replicate r 1) else Gen.listOfLength r (freq [ 3, 1; 1, 2 ])
            let! bias = Gen.elements [ true; false ]
            let! s = seed
            let! mode =
                if transposed then Gen.constant PaddingMode.Zeros
                else freq [ 4, PaddingMode.Zeros; 1, PaddingMode.Reflect; 1, PaddingMode.Replicate; 1, PaddingMode.Circular ]
            // Preserving the size needs dilation·(kernel-1) = 2·padding: odd kernels with half padding, or 'same'.
            let! kernel = if preserve then Gen.listOfLength r (Gen.elements [ 1; 3 ]) else Gen.listOfLength r (Gen.choose (1, 3))
            let half = List.map2 (fun d k -> d * (k - 1) / 2) dilation kernel
            let! padding =
                if preserve then
                    if transposed then Gen.constant (PaddingSpec.Amounts half)
                    else Gen.frequency [ 1, Gen.constant (PaddingSpec.Amounts half); 1, Gen.constant PaddingSpec.Same ]
                elif transposed then
                    Gen.listOfLength r (Gen.choose (0, 2)) |> Gen.map PaddingSpec.Amounts
                else
                    let amounts = Gen.listOfLength r (Gen.choose (0, 2)) |> Gen.map PaddingSpec.Amounts
                    if List.forall ((=) 1) stride then
                        Gen.frequency [ 3, amounts; 1, Gen.constant PaddingSpec.Same; 1, Gen.constant PaddingSpec.Valid ]
                    else Gen.frequency [ 3, amounts; 1, Gen.constant PaddingSpec.Valid ]
            let! outputPadding =
                if transposed && not preserve then
                    Gen.sequenceToList [ for s, d in List.zip stride dilation -> Gen.choose (0, max s d - 1) ]
                else Gen.constant (List.replicate r 0)
            let spec =
                { Rank = r; Transposed = transposed; InChannels = channels; OutChannels = groups * multiple; Kernel = kernel
                  Stride = stride; Padding = padding; Dilation = dilation; Groups = groups; Bias = bias; PaddingMode = mode
                  OutputPadding = outputPadding; Seed = s }
            let input = 2 :: channels :: spatial
            match ModelSpec.layerOutputShape input (LayerSpec.Conv spec) with
            | Some out when within out && (not preserve || List.tail (List.tail out) = spatial) -> return spec
            | _ ->
                // A pointwise convolution always fits; falling back keeps generation free of retries.
                let r1 = List.replicate r 1
                return
                    { spec with
                        Kernel = r1; Stride = r1; Dilation = r1; Padding = PaddingSpec.Amounts(List.replicate r 0)
                        PaddingMode = PaddingMode.Zeros; OutputPadding = List.replicate r 0 }
        }

    let private genBatchNorm (rank: int) (features: int) (affineWeight: int) (trackWeight: int) : Gen<BatchNormSpec> =
        gen {
            let! eps = Gen.elements [ 1e-5; 1e-3; 0.1 ]
            let! momentum = Gen.elements [ Some 0.1; Some 0.01; None ]
            let! affine = freq [ affineWeight, true; 1, false ]
            let! track = freq [ trackWeight, true; 1, false ]
            let! s = seed
            return { Rank = rank; Features = features; Eps = eps; Momentum = momentum; Affine = affine; TrackRunningStats = track; Seed = s }
        }

    let private genLinear (inFeatures: int) (outFeatures: int option) : Gen<LinearSpec> =
        gen {
            let! out = match outFeatures with Some o -> Gen.constant o | None -> Gen.choose (1, maxFeatures)
            let! bias = Gen.elements [ true; false ]
            let! s = seed
            return { InFeatures = inFeatures; OutFeatures = out; Bias = bias; Seed = s }
        }

    let private bnRank (shape: int list) = match shape with | [ _; _ ] -> 1 | _ :: _ :: spatial -> spatial.Length | _ -> 1

    let private after (shape: int list) (layers: LayerSpec list) = ModelSpec.throughLayers shape layers |> Option.get

    /// A head layer (Conv, ConvTranspose or Linear) followed by BatchNorm and/or ReLU: the chains fusion rewrites.
    let private genChain (preserve: bool) (shape: int list) : Gen<LayerSpec list> =
        gen {
            let! head =
                match shape with
                | [ _; f ] -> genLinear f None |> Gen.map LayerSpec.Linear
                | _ :: c :: spatial ->
                    Gen.frequency [ 3, Gen.constant false; 1, Gen.constant true ]
                    |> Gen.bind (fun t -> genConv t preserve c spatial)
                    |> Gen.map LayerSpec.Conv
                | _ -> failwith "unreachable: shapes have a batch and a channel dimension"
            let mid = after shape [ head ]
            let! tail = Gen.elements [ [ true; true ]; [ true; false ]; [ false; true ] ]
            let! bn = genBatchNorm (bnRank mid) mid.[1] 6 8
            return
                [ yield head
                  if tail.[0] then yield LayerSpec.BatchNorm bn
                  if tail.[1] then yield LayerSpec.ReLU ]
        }

    /// The shortcut of a residual block whose body maps `shape` to `bodyOut`: identity or a pointwise projection.
    let private genShortcut (shape: int list) (bodyOut: int list) : Gen<LayerSpec list> =
        gen {
            let cin, cout = shape.[1], bodyOut.[1]
            let! withBn = Gen.elements [ true; false ]
            let! bn = genBatchNorm (bnRank bodyOut) cout 6 8
            let! projection =
                match shape with
                | [ _; f ] -> genLinear f (Some cout) |> Gen.map LayerSpec.Linear
                | _ :: _ :: spatial ->
                    let r = spatial.Length
                    seed
                    |> Gen.map (fun s ->
                        LayerSpec.Conv
                            { Rank = r; Transposed = false; InChannels = cin; OutChannels = cout; Kernel = List.replicate r 1
                              Stride = List.replicate r 1; Padding = PaddingSpec.Amounts(List.replicate r 0)
                              Dilation = List.replicate r 1; Groups = 1; Bias = false; PaddingMode = PaddingMode.Zeros
                              OutputPadding = List.replicate r 0; Seed = s })
                | _ -> failwith "unreachable: shapes have a batch and a channel dimension"
            let projected = projection :: (if withBn then [ LayerSpec.BatchNorm bn ] else [])
            if cin = cout then return! Gen.frequency [ 3, Gen.constant []; 1, Gen.constant projected ]
            else return projected
        }

    /// One step: a single layer, a chain, or (with enough size) a nested container.
    let rec private genStep (size: int) (preserve: bool) (shape: int list) : Gen<LayerSpec list> =
        let flat = shape.Length = 2
        let leaf =
            [ yield 4, genChain preserve shape
              yield 1, Gen.constant [ LayerSpec.ReLU ]
              yield 2, genBatchNorm (bnRank shape) shape.[1] 4 4 |> Gen.map (fun b -> [ LayerSpec.BatchNorm b ])
              if flat then yield 2, genLinear shape.[1] None |> Gen.map (fun l -> [ LayerSpec.Linear l ])
              else
                  let spatial = List.skip 2 shape
                  yield 2, genConv false preserve shape.[1] spatial |> Gen.map (fun c -> [ LayerSpec.Conv c ])
                  yield 1, genConv true preserve shape.[1] spatial |> Gen.map (fun c -> [ LayerSpec.Conv c ])
                  let flatSize = List.fold (*) 1 (List.tail shape)
                  if not preserve && flatSize <= maxFeatures then yield 1, Gen.constant [ LayerSpec.Flatten ] ]
        let nested =
            if size < 4 then []
            else
                [ 2, genLayers (size / 2) preserve shape |> Gen.map (fun ls -> [ LayerSpec.Sequential ls ])
                  2,
                  gen {
                      let! body = genLayers (size / 2) true shape
                      let! shortcut = genShortcut shape (after shape body)
                      let! relu = Gen.elements [ true; false ]
                      return [ LayerSpec.Residual(body, shortcut, relu) ]
                  } ]
        Gen.frequency (leaf @ nested)

    and private genLayers (size: int) (preserve: bool) (shape: int list) : Gen<LayerSpec list> =
        let rec steps k (shape: int list) acc =
            if k = 0 then Gen.constant (List.rev acc |> List.concat)
            else genStep size preserve shape |> Gen.bind (fun ls -> steps (k - 1) (after shape ls) (ls :: acc))
        Gen.choose (1, max 1 (min 5 (1 + size / 4))) |> Gen.bind (fun n -> steps n shape [])

    let private genInputShape =
        Gen.frequency
            [ 2, Gen.map2 (fun c l -> [ 2; c; l ]) (Gen.choose (1, 4)) (Gen.choose (2, 10))
              3, Gen.map2 (fun c hw -> 2 :: c :: hw) (Gen.choose (1, 4)) (Gen.listOfLength 2 (Gen.choose (2, 5)))
              1, Gen.map2 (fun c dhw -> 2 :: c :: dhw) (Gen.choose (1, 3)) (Gen.listOfLength 3 (Gen.choose (2, 4)))
              1, Gen.map (fun f -> [ 2; f ]) (Gen.choose (1, 8)) ]

    let modelSpec =
        Gen.sized (fun size ->
            gen {
                let size = min size 40
                let! shape = genInputShape
                let! layers = genLayers size false shape
                let! traced = Gen.elements [ true; false ]
                let! s = seed
                return { InputShape = shape; Layers = layers; Traced = traced; Seed = s }
            })

    let arbModelSpec = Arb.fromGenShrink (modelSpec, ModelSpec.shrink)

    let fuseCase = Gen.map2 (fun m p -> { Model = m; Pick = p }) modelSpec seed

    let arbFuseCase =
        Arb.fromGenShrink (fuseCase, fun case -> ModelSpec.shrink case.Model |> Seq.map (fun m -> { case with Model = m }))

    let foldPair =
        gen {
            let! kind = Gen.elements [ 0; 1; 2 ]
            if kind < 2 then
                let! rank = Gen.choose (1, 3)
                let! channels = Gen.choose (1, 6)
                let! conv = genConv (kind = 1) false channels (List.replicate rank (maxSpatial rank))
                let! bn = genBatchNorm rank conv.OutChannels 3 1
                return LayerSpec.Conv conv, { bn with TrackRunningStats = true }
            else
                let! linear = genLinear 0 None
                let! inFeatures = Gen.choose (1, 8)
                let! single = freq [ 3, false; 1, true ]
                let! bn = genBatchNorm 1 (if single then 1 else linear.OutFeatures) 3 1
                return LayerSpec.Linear { linear with InFeatures = inFeatures }, { bn with TrackRunningStats = true }
        }

    let buildBatchNorm spec = ModelSpec.buildBatchNorm spec

    let buildLayer layer = ModelSpec.buildLayer false layer
