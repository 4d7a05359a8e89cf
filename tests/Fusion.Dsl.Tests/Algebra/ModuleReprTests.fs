/// ModuleRepr: Module.ToString() in PyTorch's print(model) layout, compared with torch's own print of the same models.
module Fusion.Dsl.Tests.Algebra.ModuleReprTests

open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Tests
open Fusion.Dsl.Zoo
open Fusion.Dsl.FSharp

/// Every layer kind with options that change its extra_repr, built here and in torch below.
let private layers () =
    Nn.Sequential [
        "c1", Nn.Conv1d(3, 4, 3)
        "c2", Nn.Conv2d(3, 16, 3, padding = 1, bias = false)
        "c3", Nn.Conv2d(3, 16, (3, 1), stride = (2, 1), padding = (0, 1), dilation = 2, padding_mode = "reflect")
        "c4", Nn.Conv2d(4, 4, 3, padding = "same", groups = 2)
        "c5", Nn.Conv2d(4, 4, 3, padding = "valid")
        "c6", Nn.Conv3d(2, 2, (3, 1, 1))
        "t1", Nn.ConvTranspose2d(3, 4, 3, stride = 2, output_padding = 1)
        "t2", Nn.ConvTranspose1d(3, 4, 3, dilation = 2, bias = false)
        "b1", Nn.BatchNorm2d 16
        "b2", Nn.BatchNorm1d(4, eps = 1e-3, momentum = None, affine = false, track_running_stats = false)
        "b3", Nn.BatchNorm3d(3, eps = 1e-7, momentum = Some 0.01)
        "l1", Nn.Linear(4, 5)
        "l2", Nn.Linear(4, 5, bias = false)
        "a1", Nn.ReLU(inplace = true)
        "a2", Nn.ReLU6()
        "a3", Nn.Hardswish(inplace = true)
        "a4", Nn.Hardsigmoid()
        "a5", Nn.SiLU(inplace = true)
        "i", Nn.Identity()
        "d1", Nn.Dropout()
        "d2", Nn.Dropout(0.2, inplace = true)
        "f", Nn.Flatten()
        "p1", Nn.MaxPool2d 3
        "p2", Nn.MaxPool2d((3, 2), stride = 1, padding = 1)
        "p3", Nn.AvgPool2d 2
        "p4", Nn.AvgPool2d(3, padding = (1, 1), ceil_mode = true, count_include_pad = false)
        "p5", Nn.AdaptiveAvgPool2d 1
        "p6", Nn.AdaptiveAvgPool2d((1, 1))
        "empty", Nn.Sequential([]: Module list)
        "nested", Nn.Sequential [ Nn.Conv2d(1, 2, 3); Nn.Sequential [ Nn.ReLU() ] ] ]

/// The same models in torch 1.13 (Debian's python3-torch, torchvision 0.14), printed with print(model).
let private torchScript = """
import warnings; warnings.filterwarnings("ignore")  # stderr joins the output; keep it empty
import torch.nn as nn, torchvision.models.quantization as q
from collections import OrderedDict
def S(*a): return nn.Sequential(*a)
m = nn.Sequential(OrderedDict([
  ('c1', nn.Conv1d(3, 4, 3)), ('c2', nn.Conv2d(3, 16, 3, padding=1, bias=False)),
  ('c3', nn.Conv2d(3, 16, (3, 1), stride=(2, 1), padding=(0, 1), dilation=2, padding_mode='reflect')),
  ('c4', nn.Conv2d(4, 4, 3, padding='same', groups=2)), ('c5', nn.Conv2d(4, 4, 3, padding='valid')),
  ('c6', nn.Conv3d(2, 2, (3, 1, 1))), ('t1', nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1)),
  ('t2', nn.ConvTranspose1d(3, 4, 3, dilation=2, bias=False)), ('b1', nn.BatchNorm2d(16)),
  ('b2', nn.BatchNorm1d(4, eps=1e-3, momentum=None, affine=False, track_running_stats=False)),
  ('b3', nn.BatchNorm3d(3, eps=1e-7, momentum=0.01)), ('l1', nn.Linear(4, 5)), ('l2', nn.Linear(4, 5, bias=False)),
  ('a1', nn.ReLU(inplace=True)), ('a2', nn.ReLU6()), ('a3', nn.Hardswish(inplace=True)), ('a4', nn.Hardsigmoid()),
  ('a5', nn.SiLU(inplace=True)), ('i', nn.Identity()), ('d1', nn.Dropout()), ('d2', nn.Dropout(0.2, inplace=True)),
  ('f', nn.Flatten()), ('p1', nn.MaxPool2d(3)), ('p2', nn.MaxPool2d((3, 2), stride=1, padding=1)), ('p3', nn.AvgPool2d(2)),
  ('p4', nn.AvgPool2d(3, padding=(1, 1), ceil_mode=True, count_include_pad=False)), ('p5', nn.AdaptiveAvgPool2d(1)),
  ('p6', nn.AdaptiveAvgPool2d((1, 1))), ('empty', nn.Sequential()), ('nested', S(nn.Conv2d(1, 2, 3), S(nn.ReLU())))]))
print(m)
print('=====')
print(q.resnet18())
print('=====')
f = q.mobilenet_v2(); f.eval(); f.fuse_model(); print(f)
"""

[<Tests>]
let tests =
    testList "Algebra.ModuleRepr" [
        test "prints every layer kind, a resnet18 and a fused mobilenet_v2 exactly as torch 1.13's print(model)" {
            Support.requireTool "python3-torch and python3-torchvision" (Support.pythonHas [ "torch"; "torchvision" ])
            let code, output = Support.runPython [ "-c"; torchScript ]
            Expect.equal code 0 output
            let expected = output.Replace("\r\n", "\n").Split("=====\n")
            let mobilenet = ModelZoo.Create("mobilenet_v2", seed = 1)
            let fusedMobilenet = Fuser.FuseModules(mobilenet.Model, [ for g in mobilenet.FuseGroups -> g :> seq<string> ])
            let ours = [ string (layers ()); string (ModelZoo.Create("resnet18", seed = 1).Model); string fusedMobilenet ]
            Expect.equal expected.Length 3 "three prints from torch"
            for o, e in List.zip ours (List.ofArray expected) do
                Expect.equal (o + "\n") e "same text as torch"
        }
        test "a leaf prints on one line, a container with its children indented by two spaces" {
            Expect.equal (string (Nn.ReLU())) "ReLU()" "leaf"
            Expect.equal (string (Nn.Sequential [ Nn.Identity() ])) "Sequential(\n  (0): Identity()\n)" "container"
            Expect.equal (ModuleRepr.Header(Nn.Sequential [ Nn.Identity() ])) "Sequential()" "header leaves the children out"
        }
        test "floats print as Python's repr" {
            let eps (v: float) = ((string (Nn.BatchNorm2d(1, eps = v))).Split("eps=")[1]).Split(",")[0]
            // Python: repr(1e-5), repr(100.0), repr(1.5e16), repr(0.0001), repr(123.45), repr(2.5e-7), repr(1e15)
            Expect.equal (eps 1e-5) "1e-05" "small"
            Expect.equal (eps 100.0) "100.0" "integral"
            Expect.equal (eps 1.5e16) "1.5e+16" "large"
            Expect.equal (eps 0.0001) "0.0001" "smallest fixed"
            Expect.equal (eps 123.45) "123.45" "fixed"
            Expect.equal (eps 2.5e-7) "2.5e-07" "small with digits"
            Expect.equal (eps 1e15) "1000000000000000.0" "largest fixed"
        }
    ]
