/// ModuleHtml: the notebook view, a collapsible tree with parameter counts.
module Fusion.Dsl.Tests.Display.ModuleHtmlTests

open Expecto
open Fusion.Dsl.Display
open Fusion.Dsl.FSharp

let private count (text: string) (part: string) = (text.Length - text.Replace(part, "").Length) / part.Length

[<Tests>]
let tests =
    testList "Display.ModuleHtml" [
        test "containers are collapsible details, leaves lines, each with its parameter count" {
            let m = Nn.Sequential [ "conv", Nn.Conv2d(3, 16, 3, bias = false); "block", Nn.Sequential [ Nn.ReLU() ] ]
            let html = ModuleHtml.Tree m
            Expect.equal (count html "<details") 2 "root and block"
            Expect.equal (count html "</details>") 2 "balanced"
            // 16 * 3 * 3 * 3 = 432 weights, no bias.
            Expect.stringContains html "(conv): Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), bias=False)" "PyTorch's line"
            Expect.stringContains html "432 parameters" "counts"
            Expect.stringContains html "<details open" "the top level starts open"
        }
        test "text is HTML-escaped" {
            let m = Nn.Module("A<b>&", [ "x", Nn.ReLU() ], fun g -> g.Output(g.Call("x", g.Input())))
            Expect.stringContains (ModuleHtml.Tree m) "A&lt;b&gt;&amp;()" "escaped"
        }
        test "a fused eval model shows no [train] although PyTorch leaves the fused container's own flag True" {
            let m = Nn.Sequential [ Nn.Conv2d(3, 4, 3); Nn.ReLU() ]
            let f = m |> Fuse.modules [ [ "0"; "1" ] ]
            Expect.isTrue (f |> Model.get "0").Training "the container's own flag is PyTorch's True"
            Expect.isFalse (f |> Model.get "0").RunsInTraining "but it runs its eval children"
            Expect.isFalse ((ModuleHtml.Tree f).Contains "[train]") "no [train] in an eval model"
            Expect.stringContains (ModuleHtml.Tree(Model.train f)) "[train]" "a training model is marked"
        }
        test "side by side shows both trees and the diff" {
            let m = Nn.Sequential [ Nn.Conv2d(3, 4, 3); Nn.ReLU() ]
            let html = ModuleHtml.SideBySide(m, m |> Fuse.modules [ [ "0"; "1" ] ])
            Expect.stringContains html "ConvReLU2d" "the fused tree"
            Expect.stringContains html "0: Conv2d -&gt; ConvReLU2d" "the diff"
        }
    ]
