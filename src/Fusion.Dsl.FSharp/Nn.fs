namespace Fusion.Dsl.FSharp

open System
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Graphs

// Each member forwards to the C# factory; optional arguments map to its nullable defaults, so defaults live in one place.
[<AbstractClass; Sealed>]
type Nn =
    static member private Opt(v: 'T option) : Nullable<'T> = Option.toNullable v
    static member private Pad(v: ConvPadding option) : ConvPadding | null = Option.toObj v

    static member Conv1d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) : Module =
        Fusion.Dsl.Nn.Conv1d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Pad padding, Nn.Opt dilation, defaultArg groups 1,
                             defaultArg bias true, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member Conv2d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) : Module =
        Fusion.Dsl.Nn.Conv2d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Pad padding, Nn.Opt dilation, defaultArg groups 1,
                             defaultArg bias true, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member Conv3d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?dilation, ?groups, ?bias, ?padding_mode, ?seed) : Module =
        Fusion.Dsl.Nn.Conv3d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Pad padding, Nn.Opt dilation, defaultArg groups 1,
                             defaultArg bias true, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member ConvTranspose1d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed, ?padding_mode) : Module =
        Fusion.Dsl.Nn.ConvTranspose1d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Opt padding, Nn.Opt output_padding,
                                      defaultArg groups 1, defaultArg bias true, Nn.Opt dilation, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member ConvTranspose2d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed, ?padding_mode) : Module =
        Fusion.Dsl.Nn.ConvTranspose2d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Opt padding, Nn.Opt output_padding,
                                      defaultArg groups 1, defaultArg bias true, Nn.Opt dilation, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member ConvTranspose3d(in_channels, out_channels, kernel_size, ?stride, ?padding, ?output_padding, ?groups, ?bias, ?dilation, ?seed, ?padding_mode) : Module =
        Fusion.Dsl.Nn.ConvTranspose3d(in_channels, out_channels, kernel_size, Nn.Opt stride, Nn.Opt padding, Nn.Opt output_padding,
                                      defaultArg groups 1, defaultArg bias true, Nn.Opt dilation, defaultArg padding_mode "zeros", defaultArg seed 0)
    static member private Momentum(momentum: float option option) =
        match momentum with Some m -> Option.toNullable m | None -> Nullable 0.1
    static member BatchNorm1d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) : Module =
        Fusion.Dsl.Nn.BatchNorm1d(num_features, defaultArg eps 1e-5, Nn.Momentum momentum, defaultArg affine true, defaultArg track_running_stats true)
    static member BatchNorm2d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) : Module =
        Fusion.Dsl.Nn.BatchNorm2d(num_features, defaultArg eps 1e-5, Nn.Momentum momentum, defaultArg affine true, defaultArg track_running_stats true)
    static member BatchNorm3d(num_features, ?eps, ?momentum, ?affine, ?track_running_stats) : Module =
        Fusion.Dsl.Nn.BatchNorm3d(num_features, defaultArg eps 1e-5, Nn.Momentum momentum, defaultArg affine true, defaultArg track_running_stats true)
    static member Linear(in_features, out_features, ?bias, ?seed) : Module =
        Fusion.Dsl.Nn.Linear(in_features, out_features, defaultArg bias true, defaultArg seed 0)
    static member ReLU(?inplace) : Module = Fusion.Dsl.Nn.ReLU(defaultArg inplace false)
    static member ReLU6(?inplace) : Module = Fusion.Dsl.Nn.ReLU6(defaultArg inplace false)
    static member Hardswish(?inplace) : Module = Fusion.Dsl.Nn.Hardswish(defaultArg inplace false)
    static member Hardsigmoid(?inplace) : Module = Fusion.Dsl.Nn.Hardsigmoid(defaultArg inplace false)
    static member SiLU(?inplace) : Module = Fusion.Dsl.Nn.SiLU(defaultArg inplace false)
    static member Identity() : Module = Fusion.Dsl.Nn.Identity()
    static member Dropout(?p, ?inplace) : Module = Fusion.Dsl.Nn.Dropout(defaultArg p 0.5, defaultArg inplace false)
    static member Flatten(?start_dim, ?end_dim) : Module = Fusion.Dsl.Nn.Flatten(defaultArg start_dim 1, defaultArg end_dim -1)
    static member MaxPool2d(kernel_size, ?stride, ?padding, ?dilation, ?ceil_mode) : Module =
        Fusion.Dsl.Nn.MaxPool2d(kernel_size, Nn.Opt stride, Nn.Opt padding, Nn.Opt dilation, defaultArg ceil_mode false)
    static member AvgPool2d(kernel_size, ?stride, ?padding, ?ceil_mode, ?count_include_pad) : Module =
        Fusion.Dsl.Nn.AvgPool2d(kernel_size, Nn.Opt stride, Nn.Opt padding, defaultArg ceil_mode false, defaultArg count_include_pad true)
    static member AdaptiveAvgPool2d(output_size) : Module = Fusion.Dsl.Nn.AdaptiveAvgPool2d(output_size)
    static member Sequential(modules: Module list) : Module = Fusion.Dsl.Nn.Sequential(Array.ofList modules)
    static member Sequential(named: (string * Module) list) : Module =
        Fusion.Dsl.Nn.Sequential([| for n, m in named -> struct (n, m) |])
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
