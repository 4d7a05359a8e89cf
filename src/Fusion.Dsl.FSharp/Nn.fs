namespace Fusion.Dsl.FSharp

open System
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Graphs

[<AbstractClass; Sealed>]
type Nn =
    static member private Mode(name: string) =
        match name with
        | "zeros" -> PaddingMode.Zeros
        | "reflect" -> PaddingMode.Reflect
        | "replicate" -> PaddingMode.Replicate
        | "circular" -> PaddingMode.Circular
        | other -> invalidArg "padding_mode" (sprintf "padding_mode must be zeros, reflect, replicate or circular; got '%s'" other)

    static member private Conv(rank, i, o, k, stride, padding, dilation, groups, bias, mode, seed) : Module =
        Conv.Create(rank, i, o, [| k |], [| defaultArg stride 1 |], defaultArg padding (ConvPadding.Explicit 0),
                    [| defaultArg dilation 1 |], defaultArg groups 1, defaultArg bias true,
                    Nn.Mode(defaultArg mode "zeros"), seed = defaultArg seed 0)

    static member private ConvT(rank, i, o, k, stride, padding, outputPadding, groups, bias, dilation, seed) : Module =
        Conv.Create(rank, i, o, [| k |], [| defaultArg stride 1 |], ConvPadding.Explicit(defaultArg padding 0),
                    [| defaultArg dilation 1 |], defaultArg groups 1, defaultArg bias true, PaddingMode.Zeros,
                    transposed = true, outputPadding = [| defaultArg outputPadding 0 |], seed = defaultArg seed 0)

    static member private Bn(rank, n, eps, momentum: float option option, affine, track) : Module =
        let momentum = match momentum with Some m -> Option.toNullable m | None -> Nullable 0.1
        BatchNorm.Create(rank, n, defaultArg eps 1e-5, momentum, defaultArg affine true, defaultArg track true)

    static member Conv1d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) =
        Nn.Conv(1, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, seed)
    static member Conv2d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) =
        Nn.Conv(2, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, seed)
    static member Conv3d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) =
        Nn.Conv(3, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, seed)
    static member ConvTranspose1d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed) =
        Nn.ConvT(1, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation, seed)
    static member ConvTranspose2d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed) =
        Nn.ConvT(2, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation, seed)
    static member ConvTranspose3d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed) =
        Nn.ConvT(3, in_channels, out_channels, kernel_size, stride, padding, output_padding, groups, bias, dilation, seed)
    static member BatchNorm1d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) =
        Nn.Bn(1, num_features, eps, momentum, affine, track_running_stats)
    static member BatchNorm2d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) =
        Nn.Bn(2, num_features, eps, momentum, affine, track_running_stats)
    static member BatchNorm3d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) =
        Nn.Bn(3, num_features, eps, momentum, affine, track_running_stats)
    static member Linear(in_features, out_features, ?bias, ?seed) : Module =
        Linear.Create(in_features, out_features, defaultArg bias true, seed = defaultArg seed 0)
    static member ReLU(?inplace) : Module = Activation.Create(ActivationKind.ReLU, defaultArg inplace false)
    static member ReLU6(?inplace) : Module = Activation.Create(ActivationKind.ReLU6, defaultArg inplace false)
    static member Hardswish(?inplace) : Module = Activation.Create(ActivationKind.Hardswish, defaultArg inplace false)
    static member Hardsigmoid(?inplace) : Module = Activation.Create(ActivationKind.Hardsigmoid, defaultArg inplace false)
    static member Identity() : Module = Identity.Create()
    static member Dropout(?p) : Module = Dropout.Create(defaultArg p 0.5)
    static member Flatten(?start_dim, ?end_dim) : Module = Flatten.Create(defaultArg start_dim 1, defaultArg end_dim -1)
    static member MaxPool2d(kernel_size, ?stride, ?padding, ?dilation, ?ceil_mode) : Module =
        MaxPool2d.Create([| kernel_size |], [| defaultArg stride kernel_size |], [| defaultArg padding 0 |],
                         [| defaultArg dilation 1 |], defaultArg ceil_mode false)
    static member AvgPool2d(kernel_size, ?stride, ?padding, ?ceil_mode, ?count_include_pad) : Module =
        AvgPool2d.Create([| kernel_size |], [| defaultArg stride kernel_size |], [| defaultArg padding 0 |],
                         defaultArg ceil_mode false, defaultArg count_include_pad true)
    static member AdaptiveAvgPool2d(output_size) : Module = AdaptiveAvgPool2d.Create([| output_size |])
    static member Sequential(modules: Module list) : Module = Sequential.Create(Array.ofList modules)
    static member Sequential(named: (string * Module) list) : Module =
        Sequential.Create(ModuleChildren.Create [ for n, m in named -> NamedModule(n, m) ])
    static member Module(typeName, children: (string * Module) list, forward: GraphBuilder -> Graph) : Module =
        let kids = ModuleChildren.Create [ for n, m in children -> NamedModule(n, m) ]
        UserModule.Create(typeName, kids, forward (GraphBuilder()))

[<AutoOpen>]
module NnOperators =
    // Sequentials built by >-> are remembered so a chain a >-> b >-> c stays flat, while a Sequential the user
    // built explicitly is kept as one nested child.
    let private chains = System.Runtime.CompilerServices.ConditionalWeakTable<Module, obj>()
    let private marker = obj ()

    let (>->) (a: Module) (b: Module) : Module =
        let parts =
            match chains.TryGetValue a with
            | true, _ -> [| for c in a.Children -> c.Module |]
            | _ -> [| a |]
        let s = Sequential.Create(Array.append parts [| b |]) :> Module
        chains.AddOrUpdate(s, marker)
        s
