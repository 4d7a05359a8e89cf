// Times computing every folded weight of resnet50 (the fold's one SIMD kernel, ChannelAxis.ScaleBlock). Run after
// `dotnet build src/Fusion.Cli -c Release` as `dotnet fsi --optimize+ tools/bench/fold_simd.fsx`, and again with
// DOTNET_EnableHWIntrinsic=0 for the scalar path.
#r "../../src/Fusion.Cli/bin/Release/net10.0/MathNet.Numerics.dll"
#r "../../src/Fusion.Cli/bin/Release/net10.0/Fusion.Dsl.dll"
#r "../../src/Fusion.Cli/bin/Release/net10.0/Fusion.Dsl.Zoo.dll"
open Fusion.Dsl
let z = Zoo.ModelZoo.Create("resnet50", seed = 1, randomizeBatchNorm = true)
let groups = z.FuseGroups |> Seq.map (fun g -> g :> seq<string>)
let originals = System.Collections.Generic.HashSet(z.Model.StateDict() |> Seq.map (fun kv -> kv.Value), HashIdentity.Reference)
let times =
    [ for run in 1 .. 7 ->
        let fused = Fuser.FuseModules(z.Model, groups)
        let folded = fused.StateDict() |> Seq.map (fun kv -> kv.Value) |> Seq.filter (fun t -> not (originals.Contains t)) |> Array.ofSeq
        let sw = System.Diagnostics.Stopwatch.StartNew()
        let mutable s = 0.0f
        for t in folded do s <- s + t.Float32.[0]
        sw.Elapsed.TotalMilliseconds ]
printfn "SIMD=%b materialise resnet50 folds: median %.1f ms of %A" System.Numerics.Vector.IsHardwareAccelerated (List.sort times).[3] (times |> List.map (fun t -> System.Math.Round(t, 1)))
