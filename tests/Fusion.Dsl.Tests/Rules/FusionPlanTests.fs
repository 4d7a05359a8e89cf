module Fusion.Dsl.Tests.Rules.FusionPlanTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels

let private convBnRelu training = seq training [ conv 2 3 4 3 1 training; bn 2 4 2 training; relu training ]

/// Runs a fusion expected to fail; checks the kind, that the input is unchanged, and returns the error.
let private refused (kind: FusionErrorKind) (model: Module) (rebuild: unit -> Module) (fuse: Module -> Module) =
    let e = Support.throwsOf<FusionException> (fun () -> fuse model |> ignore)
    Expect.equal e.Kind kind (sprintf "error kind (message: %s)" e.Message)
    Expect.equal model (rebuild ()) "the input model is unchanged"
    e

let private eval (gs: string list list) (m: Module) = Fuser.FuseModules(m, groups gs)
let private qat (gs: string list list) (m: Module) = Fuser.FuseModulesQat(m, groups gs)

let private suiteEvalGroups =
    [ [ "conv3"; "bn3"; "relu4" ]; [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "relu2" ]; [ "bn2"; "relu3" ]; [ "sub1.conv"; "sub1.bn" ] ]

[<Tests>]
let tests =
    testList "Rules.FusionPlan" [
        test "fusion never changes its input and shares every subtree outside the groups" {
            let model = modelForFusion false
            let fused = eval suiteEvalGroups model
            Expect.equal model (modelForFusion false) "input structurally unchanged"
            for path in [ "sub2"; "fc"; "quant"; "dequant" ] do
                Expect.isTrue (obj.ReferenceEquals(at path fused, at path model)) (sprintf "'%s' shared" path)
            Expect.isFalse (obj.ReferenceEquals(fused, model)) "a new root"
            Expect.equal (kindAt "conv1" model) "Conv2d" "the input still has its Conv2d"
        }
        test "a plan with nothing to do returns the same object" {
            let model = modelForFusion false
            Expect.isTrue (obj.ReferenceEquals(FusionPlan.Empty.Apply model, model)) "empty plan"
            Expect.isTrue (obj.ReferenceEquals((FusionPlan.Create([], false)).Apply model, model)) "plan of no groups"
            let identityFuser = FuseOptions(FuserFunc = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun ms _ -> ms))
            Expect.isTrue (obj.ReferenceEquals(Fuser.FuseModules(model, [ "conv1"; "bn1" ], identityFuser), model)) "a fuser that keeps the modules"
        }
        test "later groups see the results of earlier ones" {
            let model = convBnRelu false
            let fused = eval [ [ "0"; "1" ]; [ "0"; "2" ] ] model
            Expect.equal (signature fused) "Sequential-(ConvReLU2d+(Conv2d-,ReLU-),Identity-,Identity-)" "folded conv then fused with the ReLU"
            let e = refused FusionErrorKind.NoRule model (fun () -> convBnRelu false) (eval [ [ "0"; "1" ]; [ "1"; "2" ] ])
            Expect.equal e.GroupIndex 1 "the second group"
            Expect.sequenceEqual e.ModuleKinds [ "Identity"; "ReLU" ] "it sees the Identity left by the first group"
        }
        test "all or nothing: when a later group fails no model is produced and the input is untouched" {
            let model = modelForFusion false
            let e = refused FusionErrorKind.MissingName model (fun () -> modelForFusion false)
                        (eval [ [ "conv1"; "bn1"; "relu1" ]; [ "sub1.conv"; "sub1.bnx" ] ])
            Expect.equal e.GroupIndex 1 "second group"
            Expect.equal (kindAt "conv1" model) "Conv2d" "the first group's change is not visible in the input"
        }
        test "MissingName names the missing segment, the existing children and the group" {
            let model = modelForFusion false
            let e = refused FusionErrorKind.MissingName model (fun () -> modelForFusion false) (eval [ [ "conv1"; "sub1.bn9" ] ])
            Expect.stringContains e.Message "'sub1.bn9'" "the path"
            Expect.stringContains e.Message "no child 'bn9'" "the segment"
            Expect.stringContains e.Message "conv, bn" "the children that exist"
            Expect.stringContains e.Message "group 0" "the group"
            Expect.sequenceEqual e.Paths [ "conv1"; "sub1.bn9" ] "paths"
            Expect.sequenceEqual e.ModuleKinds [ "Conv2d" ] "kinds resolved so far"
            Expect.isTrue (e.InnerException :? ModulePathException) "the path error is kept"
        }
        test "MissingName inside an earlier group's result names the whole path and what that result holds" {
            // Group 0 puts a ConvReLU2d (children 0 and 1) at '0.0'; group 1 then asks for '0.0.5' inside it.
            let build () = seq false [ convBnRelu false; relu false ]
            let e = refused FusionErrorKind.MissingName (build ()) build (eval [ [ "0.0"; "0.1"; "0.2" ]; [ "0.0.5"; "1" ] ])
            Expect.equal e.GroupIndex 1 "the second group"
            Expect.stringContains e.Message "'0.0.5': '0.0' (ConvReLU2d) has no child '5'; its children are: 0, 1" "the whole path, the fused result"
            let inner = e.InnerException :?> ModulePathException
            Expect.equal inner.Path "0.0.5" "the path as asked"
            Expect.equal inner.ParentPath "0.0" "its parent in the rewritten tree"
        }
        test "NoRule lists the rules that start with the first kind" {
            let model = seq false [ linear 4 3 1 false; relu6 false ]
            let e = refused FusionErrorKind.NoRule model (fun () -> seq false [ linear 4 3 1 false; relu6 false ]) (eval [ [ "0"; "1" ] ])
            Expect.stringContains e.Message "(Linear, ReLU6)" "the kinds found"
            Expect.stringContains e.Message "(Linear, BatchNorm1d), (Linear, ReLU)" "the alternatives"
            Expect.stringContains e.Message "AdditionalRules" "how to add one"
            let e2 = refused FusionErrorKind.NoRule model (fun () -> seq false [ linear 4 3 1 false; relu6 false ]) (eval [ [ "1"; "0" ] ])
            Expect.stringContains e2.Message "no rule starts with ReLU6" "no alternative"
        }
        test "MixedModes names each module's mode" {
            let build () = seq false [ conv 2 3 4 3 1 false; bn 2 4 2 true ]
            let e = refused FusionErrorKind.MixedModes (build ()) build (eval [ [ "0"; "1" ] ])
            Expect.stringContains e.Message "same mode (train or eval)" "PyTorch's words"
            Expect.stringContains e.Message "'0' is in eval mode, '1' is in training mode" "each mode"
            Expect.stringContains e.Message "Eval()" "what to do"
        }
        test "TrainingMode: folding in training mode suggests eval() or the QAT form" {
            let e = refused FusionErrorKind.TrainingMode (convBnRelu true) (fun () -> convBnRelu true) (eval [ [ "0"; "1"; "2" ] ])
            Expect.stringContains e.Message "Fusion only for eval!" "PyTorch's words"
            Expect.stringContains e.Message "'0' (Conv2d)" "names the module"
            Expect.stringContains e.Message "Eval()" "suggests eval"
            Expect.stringContains e.Message "FuseModulesQat" "suggests QAT"
            Expect.stringContains e.Message "ConvBnReLU2d" "names the QAT form"
            Expect.equal e.RuleName "conv2d_bn2d_relu" "rule"
            Expect.equal e.GuardName "eval-mode" "guard"
        }
        test "NoRunningStats, NotAffine and ChannelMismatch name the BatchNorm and the fix" {
            let noStats () = seq false [ conv 2 3 4 3 1 false; bnNoStats 2 4 false ]
            let e1 = refused FusionErrorKind.NoRunningStats (noStats ()) noStats (eval [ [ "0"; "1" ] ])
            Expect.stringContains e1.Message "'1' (BatchNorm2d) has track_running_stats=False" "names it"
            let e1q = refused FusionErrorKind.NoRunningStats (noStats ()) noStats (qat [ [ "0"; "1" ] ])
            Expect.stringContains e1q.Message "QAT" "QAT needs them too"
            let nonAffine () = seq true [ conv 2 3 4 3 1 true; bnNonAffine 2 4 2 true ]
            let e2 = refused FusionErrorKind.NotAffine (nonAffine ()) nonAffine (qat [ [ "0"; "1" ] ])
            Expect.stringContains e2.Message "affine=False" "names the flag"
            Expect.equal (kindAt "0" (eval [ [ "0"; "1" ] ] (nonAffine().Eval()))) "Conv2d" "eval folding accepts a non-affine BatchNorm"
            let mismatch () = seq false [ conv 2 3 4 3 1 false; bn 2 5 2 false ]
            let e3 = refused FusionErrorKind.ChannelMismatch (mismatch ()) mismatch (eval [ [ "0"; "1" ] ])
            Expect.stringContains e3.Message "num_features=5" "BN channels"
            Expect.stringContains e3.Message "produces 4 output channels" "conv channels"
            let linearMismatch () = seq true [ linear 4 3 1 true; bn 1 1 2 true ]
            let e4 = refused FusionErrorKind.ChannelMismatch (linearMismatch ()) linearMismatch (qat [ [ "0"; "1" ] ])
            Expect.stringContains e4.Message "num_features=1" "QAT needs equal counts"
        }
        test "InvalidGroups: empty group, repeated name, name inside another, empty segment" {
            let m = convBnRelu false
            let rebuild () = convBnRelu false
            let e1 = refused FusionErrorKind.InvalidGroups m rebuild (eval [ [ "0"; "1" ]; [] ])
            Expect.equal e1.GroupIndex 1 "which group"
            Expect.stringContains e1.Message "empty" "says so"
            let e2 = refused FusionErrorKind.InvalidGroups m rebuild (eval [ [ "0"; "0" ] ])
            Expect.stringContains e2.Message "'0' appears twice" "repeat"
            let nested () = seq false [ convBnRelu false ]
            let e3 = refused FusionErrorKind.InvalidGroups (nested ()) nested (eval [ [ "0"; "0.1" ] ])
            Expect.stringContains e3.Message "'0.1' lies inside '0'" "nesting"
            let e4 = refused FusionErrorKind.InvalidGroups m rebuild (eval [ [ "0."; "1" ] ])
            Expect.stringContains e4.Message "empty segment" "dots"
            let e5 = refused FusionErrorKind.InvalidGroups m rebuild (eval [])
            Expect.equal e5.GroupIndex -1 "the whole argument"
        }
        test "pre-hooks of the first module and forward hooks of the last move to the fused module exactly once" {
            let pre1, pre2, post = preHook "pre1", preHook "pre2", fwdHook "post"
            let model =
                seq false [ (conv 2 3 4 3 1 false).AddPreHook(pre1).AddPreHook(pre2); bn 2 4 2 false; (relu false).AddHook(post) ]
            let fused = eval [ [ "0"; "1"; "2" ] ] model
            let f = at "0" fused
            Expect.sequenceEqual f.PreHooks [ pre1; pre2 ] "pre-hooks once, in order"
            Expect.sequenceEqual f.Hooks [ post ] "forward hook once"
            for p in [ "0.0"; "0.1"; "1"; "2" ] do
                let m = at p fused
                Expect.isEmpty m.PreHooks (sprintf "'%s' has no pre-hook" p)
                Expect.isEmpty m.Hooks (sprintf "'%s' has no forward hook" p)
            Expect.sequenceEqual (at "0" model).PreHooks [ pre1; pre2 ] "the input keeps its hooks"
        }
        test "hooks of an eval Conv+BN fold are not duplicated (PyTorch copies them with the conv and registers them again)" {
            let pre = preHook "pre"
            let model = seq false [ (conv 2 3 4 3 1 false).AddPreHook pre; (bn 2 4 2 false).AddHook(fwdHook "post") ]
            let f = at "0" (eval [ [ "0"; "1" ] ] model)
            Expect.equal f.TypeName "Conv2d" "folded"
            Expect.sequenceEqual f.PreHooks [ pre ] "exactly once"
            Expect.equal f.Hooks.Length 1 "exactly once"
        }
        test "HookNotKept refuses hooks that fusion cannot keep, naming hook, path and remedy" {
            let pre = preHook "audit"
            let post = fwdHook "probe"
            let model = seq false [ (conv 2 3 4 3 1 false).AddHook post; (bn 2 4 2 false).AddPreHook pre; relu false ]
            let e = Support.throwsOf<FusionException> (fun () -> eval [ [ "0"; "1"; "2" ] ] model |> ignore)
            Expect.equal e.Kind FusionErrorKind.HookNotKept "kind"
            Expect.stringContains e.Message "forward hook 'probe' on '0' (Conv2d, position 0 of 3)" "forward hook on the first module"
            Expect.stringContains e.Message "forward pre-hook 'audit' on '1' (BatchNorm2d, position 1 of 3)" "pre-hook on a later module"
            Expect.stringContains e.Message "register the equivalent on the fused module at '0'" "what to do"
            Expect.sequenceEqual (at "0" model).Hooks [ post ] "input untouched"
        }
        test "a custom fuser function is honoured and its result validated" {
            let mutable seen = []
            let fuser = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun ms isQat ->
                seen <- (isQat, [ for m in ms -> m.TypeName ]) :: seen
                [| Identity.Create() :> Module; ms.[0] |] :> IReadOnlyList<Module>)
            let model = seq false [ (conv 2 3 4 3 1 false).AddPreHook(preHook "p"); bn 2 4 2 false ]
            let fused = Fuser.FuseModulesQat(model, [ "0"; "1" ], FuseOptions(FuserFunc = fuser))
            Expect.equal seen [ true, [ "Conv2d"; "BatchNorm2d" ] ] "called once with is_qat and the group"
            Expect.equal (signature fused) "Sequential-(Identity-,Conv2d-)" "its result placed position by position"
            Expect.equal (at "0" fused).PreHooks.Length 1 "the first module's pre-hook moved to position 0"
            Expect.isEmpty (at "1" fused).PreHooks "the fuser saw the modules without hooks"
            let bad (result: Module[] | null) =
                FuseOptions(FuserFunc = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun _ _ ->
                    match result with null -> Unchecked.defaultof<_> | r -> r :> IReadOnlyList<Module>))
            let rebuild () = seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false ]
            let e1 = refused FusionErrorKind.FuserResult (rebuild ()) rebuild (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], bad [| Identity.Create() |]))
            Expect.stringContains e1.Message "returned 1 module(s) for a group of 2" "length"
            let e2 = refused FusionErrorKind.FuserResult (rebuild ()) rebuild (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], bad null))
            Expect.stringContains e2.Message "returned null" "null list"
            let e3 = refused FusionErrorKind.FuserResult (rebuild ()) rebuild (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], bad [| Identity.Create(); Unchecked.defaultof<Module> |]))
            Expect.stringContains e3.Message "null at position 1 ('1')" "null entry"
        }
        test "a fuser result that drops a submodule a graph calls is refused as FuserResult, naming the call" {
            // The root's graph calls into 'block' (block.conv, block.relu): replacing the container by an Identity would leave
            // the graph calling modules that no longer exist.
            let build () =
                let g = Fusion.Dsl.Graphs.GraphBuilder()
                let x = g.Input()
                let y = g.Call("relu", g.Call("block.relu", g.Call("block.conv", x)))
                let block = user "Block" false [ "conv", conv 2 3 4 3 1 false; "relu", relu false ]
                UserModule.Create("Net", ModuleChildren.Create([ NamedModule("block", block); NamedModule("relu", relu false) ]), g.Output y) :> Module
            let dropBlock =
                FuseOptions(FuserFunc = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun ms _ ->
                    [| Identity.Create() :> Module; ms.[1] |] :> IReadOnlyList<Module>),
                           // 'block' itself never runs (the graph calls into it), which the dataflow check would refuse first.
                           AllowUnsafeDataflow = true)
            let e = refused FusionErrorKind.FuserResult (build ()) build (fun m -> Fuser.FuseModules(m, [ "block"; "relu" ], dropBlock))
            Expect.stringContains e.Message "the result for 'block' (Identity) has no submodule 'conv'" "what is missing"
            Expect.stringContains e.Message "graph of the root (Net) calls as 'block.conv'" "who calls it"
            Expect.equal e.GroupIndex 0 "the group"
        }
        test "an additional fuser mapping overrides the default for its pattern" {
            let keepBn = Func<bool, IReadOnlyList<Module>, Module>(fun _ ms -> FusedModule.Create("ConvBn2d", ms.[0], ms.[1]) :> Module)
            let options = FuseOptions(AdditionalFuserMethodMapping = readOnlyDict [ FusionPattern.Of("Conv2d", "BatchNorm2d"), keepBn ])
            let fused = Fuser.FuseModules(seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false ], [ "0"; "1" ], options)
            Expect.equal (kindAt "0" fused) "ConvBn2d" "the user's method ran instead of folding"
            let reluFuse = Func<bool, IReadOnlyList<Module>, Module>(fun _ ms -> FusedModule.Create("LinearReLU6", ms.[0], ms.[1]) :> Module)
            let withNew = FuseOptions(AdditionalFuserMethodMapping = readOnlyDict [ FusionPattern.Of("Linear", "ReLU6"), reluFuse ])
            let fused2 = Fuser.FuseModules(seq false [ linear 4 3 1 false; relu6 false ], [ "0"; "1" ], withNew)
            Expect.equal (signature fused2) "Sequential-(LinearReLU6-(Linear-,ReLU6-),Identity-)" "a new pattern"
        }
        test "additional rules keep their guards; a custom fuser with additional rules is refused as contradictory" {
            let guard = FusionGuard.Create("small", FusionErrorKind.ChannelMismatch,
                            Func<FusionMatch, string | null>(fun m -> if (m.Modules.[0] :?> Linear).OutFeatures > 2 then "too wide" else null),
                            "use at most 2 features")
            let r = FusionRule.Create("linear_relu6", FusionPattern.Of("Linear", "ReLU6"),
                        Func<bool, IReadOnlyList<Module>, Module>(fun _ ms -> FusedModule.Create("LinearReLU6", ms.[0], ms.[1]) :> Module), guard)
            let options = FuseOptions(AdditionalRules = [| r |])
            let build () = seq false [ linear 4 3 1 false; relu6 false ]
            let e = refused FusionErrorKind.ChannelMismatch (build ()) build (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], options))
            Expect.stringContains e.Message "guard 'small' failed: too wide" "guard by name"
            Expect.stringContains e.Message "use at most 2 features" "its remedy"
            let both = FuseOptions(AdditionalRules = [| r |], FuserFunc = Func<IReadOnlyList<Module>, bool, IReadOnlyList<Module>>(fun ms _ -> ms))
            let e2 = Support.throwsOf<ArgumentException> (fun () -> Fuser.FuseModules(build (), [ "0"; "1" ], both) |> ignore)
            Expect.stringContains e2.Message "would be ignored" "says why"
        }
        test "a rule whose applier returns null is reported as FuserResult" {
            let r = FusionRule.Create("broken", FusionPattern.Of("Linear", "ReLU6"),
                        Func<bool, IReadOnlyList<Module>, Module>(fun _ _ -> Unchecked.defaultof<Module>))
            let build () = seq false [ linear 4 3 1 false; relu6 false ]
            let e = refused FusionErrorKind.FuserResult (build ()) build (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], FuseOptions(AdditionalRules = [| r |])))
            Expect.stringContains e.Message "rule 'broken' returned null" "names the rule"
        }
        test "an empty rule set refuses every group, naming the kinds" {
            let e = refused FusionErrorKind.NoRule (convBnRelu false) (fun () -> convBnRelu false)
                        (fun m -> Fuser.FuseModules(m, [ "0"; "1" ], FuseOptions(Rules = RuleSet.Empty)))
            Expect.stringContains e.Message "(Conv2d, BatchNorm2d)" "kinds"
        }
    ]
