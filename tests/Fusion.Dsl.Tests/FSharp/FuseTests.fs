module Fusion.Dsl.Tests.FSharp.FuseTests

open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Folding
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors
open Fusion.Dsl.FSharp

/// A BatchNorm with non-trivial statistics, so folding changes the weights.
let private bn2d n (rng: System.Random) =
    BatchNorm.Create(2, n, weight = Init.Uniform(rng, 1.0, n), bias = Init.Uniform(rng, 1.0, n),
                     runningMean = Init.Uniform(rng, 0.5, n), runningVar = Tensor.Generate((fun _ -> 0.5f + float32 (rng.NextDouble())), n)) :> Module

let private model () =
    let rng = System.Random 3
    Nn.Sequential [ "conv1", Nn.Conv2d(3, 4, 3, padding = 1, seed = 1); "bn1", bn2d 4 rng; "relu1", Nn.ReLU6()
                    "conv2", Nn.Conv2d(4, 4, 1, seed = 2); "relu2", Nn.ReLU() ]

let private input = Init.Normal(System.Random 9, 1.0, 2, 3, 6, 6)

/// Conv2d + BatchNorm2d + ReLU6, which PyTorch's defaults refuse: fold, then keep the ReLU6 in a Sequential.
let private convBnRelu6 =
    Rule.ofMatch "conv-bn-relu6" [ "Conv2d"; "BatchNorm2d"; "ReLU6" ] (fun isQat ms ->
        match ms with
        | [ Conv2d c; BatchNorm2d bn; ReLU6 r ] when not isQat -> Some(Nn.Sequential [ BatchNormFolding.FoldConvBn(c, bn) :> Module; r :> Module ])
        | _ -> None)

/// A forward pass relative to its own magnitude.
let private close (expected: Tensor) (actual: Tensor) =
    Expect.isTrue (actual.IsCloseTo(expected, Support.Tol.equivRel, Support.Tol.equivAbs)) (sprintf "max |diff| %g" (actual.MaxAbsDiff expected))

[<Tests>]
let tests =
    testList "FSharp.Fuse" [
        test "the pipeline form gives the same model as the C# facade" {
            let m = model ()
            let viaPipeline = m |> Fuse.modules [ [ "conv2"; "relu2" ] ]
            let viaFacade = Fuser.FuseModules(m, [ [ "conv2"; "relu2" ] |> Seq.ofList ])
            Expect.equal viaPipeline viaFacade "same result"
            Expect.isTrue (obj.ReferenceEquals(Model.get "conv1" m, Model.get "conv1" viaPipeline)) "untouched modules shared"
        }
        test "a user's rule as an F# match extends the defaults and is equivalent" {
            let m = model ()
            Expect.isError (m |> Fuse.tryModules [ [ "conv1"; "bn1"; "relu1" ] ]) "PyTorch's defaults have no Conv+BN+ReLU6 rule"
            let rules = Rules.defaults |> Rules.add convBnRelu6
            let fused = m |> Fuse.modulesWith rules [ [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "relu2" ] ]
            match Model.get "conv1" fused, Model.get "bn1" fused with
            | Sequential [ Conv2d _; ReLU6 _ ], Identity _ -> ()
            | a, b -> failtestf "unexpected %O / %O" a b
            close (m |> Model.forward input) (fused |> Model.forward input)
        }
        test "a user's rule for a default pattern wins over PyTorch's" {
            let mine = Rule.create "my-conv-relu" [ "Conv2d"; "ReLU" ] (fun _ ms -> Nn.Sequential ms)
            let rules = Rules.defaults |> Rules.add mine
            Expect.equal (Rules.tryFind [ "Conv2d"; "ReLU" ] rules |> Option.map Rule.name) (Some "my-conv-relu") "override in place"
            Expect.equal (Rules.toList rules).Length (Rules.toList Rules.defaults).Length "no rule added, one replaced"
            let fused = model () |> Fuse.modulesWith rules [ [ "conv2"; "relu2" ] ]
            Expect.equal (Model.get "conv2" fused).TypeName "Sequential" "the user's fuser ran"
        }
        test "a rule whose match does not fit is refused by name, not skipped" {
            let never = Rule.ofMatch "never" [ "Conv2d"; "ReLU" ] (fun _ _ -> None)
            let attempt () = model () |> Fuse.modulesWith (Rules.defaults |> Rules.add never) [ [ "conv2"; "relu2" ] ] |> ignore
            let e = Support.throwsOf<FusionException> attempt
            Expect.equal e.Kind FusionErrorKind.FuserResult "a None from the match is a fuser-result refusal"
            Expect.stringContains e.Message "never" "names the rule"
        }
        test "guards written in F# refuse with their kind and remedy" {
            let guarded =
                Rule.create "small-only" [ "Conv2d"; "ReLU" ] (fun _ ms -> Nn.Sequential ms)
                |> Rule.withGuard "at-most-2-channels" FusionErrorKind.ChannelMismatch
                    (function
                     | Conv2d c :: _ when c.OutChannels > 2 -> Some(sprintf "%d output channels" c.OutChannels)
                     | _ -> None)
                    "use a conv with at most 2 channels"
            let attempt () = model () |> Fuse.modulesWith (Rules.defaults |> Rules.add guarded) [ [ "conv2"; "relu2" ] ] |> ignore
            let e = Support.throwsOf<FusionException> attempt
            Expect.equal e.Kind FusionErrorKind.ChannelMismatch "guard's kind"
            Expect.stringContains e.Message "at most 2 channels" "remedy in the message"
        }
        test "tryModules returns the refusal as a value and leaves the model as it was" {
            let m = model ()
            match m |> Fuse.tryModules [ [ "conv1"; "bn9" ] ] with
            | Error e -> Expect.equal e.Kind FusionErrorKind.MissingName "missing name"
            | Ok _ -> failtest "expected a refusal"
            Expect.equal m (model ()) "input unchanged"
        }
    ]

[<Tests>]
let autoTests =
    testList "FSharp.Fuse.auto" [
        test "auto finds the groups torchvision's fuse_model() fuses, and they fuse" {
            let z = Fusion.Dsl.Zoo.ModelZoo.Create("mobilenet_v2", widthMult = 0.35, numClasses = 10)
            let found = Fuse.auto z.Model
            Expect.equal found [ for g in z.FuseGroups -> List.ofSeq g ] "torchvision's groups, in order"
            let fused = z.Model |> Fuse.modules found
            Expect.isEmpty (Fuse.auto fused) "nothing left to fuse"
        }
        test "autoWith the extended rules also finds the patterns PyTorch lacks" {
            let m = Nn.Conv2d(3, 4, 3) >-> Nn.BatchNorm2d 4 >-> Nn.ReLU6()
            Expect.equal (Fuse.auto m) [ [ "0"; "1" ] ] "PyTorch's defaults stop at Conv+BN"
            Expect.equal (Fuse.autoWith RuleSet.Extended m) [ [ "0"; "1"; "2" ] ] "Conv+BN+ReLU6"
        }
    ]
