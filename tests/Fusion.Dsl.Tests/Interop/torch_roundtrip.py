"""PyTorch's side of TorchRoundTripTests.fs (run with /usr/bin/python3, PYTHONPATH = python/ and this folder).

  prepare DIR   builds every case (seeded weights, random BatchNorm statistics), exports it with fusion_torch to
                DIR/CASE/model.json, and writes DIR/CASE/io.safetensors (input, PyTorch's output), DIR/CASE/case.json
                (groups, qat) and DIR/refusals.json (what the exporter says about models it must refuse).
  check DIR     for every DIR/CASE/fused-*.json that Fusion.Dsl wrote: rebuilds the model, loads the exported weights
                strict, fuses it with PyTorch's own fuse_modules (or _qat) and the same groups, loads Fusion.Dsl's
                fused state_dict with strict=True, runs the input, and reports the numbers in DIR/check.json.
"""
import copy
import importlib
import json
import os
import sys

import torch
import torch.nn as nn
from torch.ao.quantization import fuse_modules, fuse_modules_qat

import fusion_torch

SEED = 7


def randomize_bn(model, gen):
    """Non-trivial BatchNorm state, so folding changes weights (as the shared fixtures do)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))


def torchvision_groups(model):
    """The groups the quantizable network's own fuse_model() fuses, as paths from the root (recorded by a spy)."""
    probe = copy.deepcopy(model)  # fuse_model() fuses in place
    paths = {id(m): n for n, m in probe.named_modules()}
    groups = []

    def spy(mod, names, is_qat=False, **kw):
        prefix = paths[id(mod)]
        for l in ([names] if all(isinstance(n, str) for n in names) else names):
            groups.append([(prefix + "." if prefix else "") + n for n in l])

    mods = [importlib.import_module(f"torchvision.models.quantization.{n}") for n in
            ("utils", "resnet", "mobilenetv2", "mobilenetv3", "googlenet")]
    saved = [(m, m._fuse_modules) for m in mods if hasattr(m, "_fuse_modules")]
    for m, _ in saved:
        m._fuse_modules = spy
    try:
        probe.fuse_model()
    finally:
        for m, f in saved:
            m._fuse_modules = f
    return groups


TV = "torchvision.models.quantization"
# name: (factory, kwargs, input shape, groups or None for torchvision's own, qat)
CASES = {
    "resnet18": (f"{TV}:resnet18", {"weights": None, "quantize": False}, [1, 3, 64, 64], None, False),
    "resnet50": (f"{TV}:resnet50", {"weights": None, "quantize": False}, [1, 3, 64, 64], None, False),
    "mobilenet_v2": (f"{TV}:mobilenet_v2", {"weights": None, "quantize": False}, [1, 3, 64, 64], None, False),
    # aux_logits=False: the auxiliary heads run only in training, and Fusion.Dsl refuses to fuse modules that never run
    "googlenet": (f"{TV}:googlenet", {"weights": None, "quantize": False, "init_weights": False, "aux_logits": False},
                  [1, 3, 64, 64], None, False),
    "mobilenet_v3_large": (f"{TV}:mobilenet_v3_large", {"weights": None, "quantize": False}, [1, 3, 64, 64], None,
                           False),
    "nested": ("roundtrip_models:Nested", {}, [1, 3, 12, 12],
               [["stem.0", "stem.1", "stem.2"], ["body.inner.conv", "body.inner.bn"], ["body.proj.0", "body.proj.1"],
                ["side.0", "side.1"], ["fc", "fc_relu"]], False),
    "reused": ("roundtrip_models:Reused", {}, [1, 3, 10, 10], [["conv1", "bn1"], ["conv2", "bn2"]], False),
    "buffers": ("roundtrip_models:Buffers", {}, [1, 3, 10, 10], [["conv", "bn"]], False),
    "list_iterated": ("roundtrip_models:ListIterated", {}, [1, 3, 10, 10],
                      [[f"blocks.{i}.0", f"blocks.{i}.1", f"blocks.{i}.2"] for i in range(3)], False),
    "list_indexed": ("roundtrip_models:ListIndexed", {}, [1, 3, 10, 10], [["layers.0", "layers.1", "layers.2"]], False),
    "dict": ("roundtrip_models:Dict", {}, [1, 3, 10, 10], [["stem.conv", "stem.bn", "stem.act"]], False),
    "gated": ("roundtrip_models:Gated", {}, [2, 3, 10, 10], [["stem.0", "stem.1", "stem.2"]], False),
    "sequential": ("roundtrip_models:sequential_root", {}, [1, 3, 10, 10], [["0", "1", "2"], ["5", "6"]], False),
    "qat": ("roundtrip_models:QatNet", {}, [2, 3, 10, 10], [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["fc", "relu2"]],
            True),
}
REFUSALS = {"data_dependent": "roundtrip_models:DataDependent"}


def build(spec, kwargs, qat):
    mod, _, name = spec.partition(":")
    torch.manual_seed(SEED)
    model = getattr(importlib.import_module(mod), name)(**kwargs)
    return model.train(qat)


def prepare(out):
    os.makedirs(out, exist_ok=True)
    for name, (spec, kwargs, shape, groups, qat) in CASES.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = build(spec, kwargs, qat)
        randomize_bn(model, torch.Generator().manual_seed(SEED))
        if groups is None:
            groups = torchvision_groups(model)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(SEED + 1))
        fusion_torch.export(model, os.path.join(d, "model.json"), input_shape=shape)
        with torch.no_grad():
            y = copy.deepcopy(model)(x)   # a copy: training-mode BatchNorm updates its running statistics
        fusion_torch.save_file({"input": x, "output": y}, os.path.join(d, "io.safetensors"))
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"factory": spec, "args": kwargs, "groups": groups, "qat": qat}, f)
        with open(os.path.join(d, "groups.json"), "w") as f:   # for fusion fuse --groups-file
            json.dump(groups, f)
    refusals = {}
    for name, spec in REFUSALS.items():
        d = os.path.join(out, "refused", name)
        os.makedirs(d, exist_ok=True)
        try:
            fusion_torch.export(build(spec, {}, False), d)
            refusals[name] = {"refused": False, "message": ""}
        except fusion_torch.ExportError as e:
            refusals[name] = {"refused": True, "message": str(e)}
        refusals[name]["files"] = sorted(os.listdir(d))
    with open(os.path.join(out, "refusals.json"), "w") as f:
        json.dump(refusals, f, indent=1)
    with open(os.path.join(out, "prepared"), "w") as f:
        f.write("ok\n")


def check(out):
    report = {}
    for name, (spec, kwargs, shape, _, qat) in CASES.items():
        d = os.path.join(out, name)
        with open(os.path.join(d, "case.json")) as f:
            case = json.load(f)
        io = fusion_torch.load_state_dict(os.path.join(d, "io.safetensors"))
        exported = build(spec, kwargs, qat)
        exported.load_state_dict(fusion_torch.load_state_dict(os.path.join(d, "model.safetensors")), strict=True)
        exported.train(qat)
        for variant in sorted(v[len("fused-"):-len(".json")] for v in os.listdir(d)
                              if v.startswith("fused-") and v.endswith(".json")):
            r = {}
            report[f"{name}/{variant}"] = r
            model = copy.deepcopy(exported)
            fused = (fuse_modules_qat if qat else fuse_modules)(model, case["groups"], inplace=False)
            ours = fusion_torch.load_state_dict(os.path.join(d, f"fused-{variant}.safetensors"))
            r["missing"] = sorted(set(fused.state_dict()) - set(ours))
            r["unexpected"] = sorted(set(ours) - set(fused.state_dict()))
            try:
                fused.load_state_dict(ours, strict=True)
                r["loaded"], r["error"] = True, ""
            except RuntimeError as e:
                r["loaded"], r["error"] = False, str(e)
                continue
            with torch.no_grad():
                y = fused(io["input"])
            ref = io["output"]
            r["max_abs_diff_vs_unfused"] = float((y - ref).abs().max())
            r["max_abs_unfused"] = float(ref.abs().max())
            mine = os.path.join(d, f"ours-{variant}.safetensors")
            if os.path.exists(mine):
                o = fusion_torch.load_state_dict(mine)["output"]
                r["max_abs_diff_vs_ours"] = float((y - o).abs().max()) if o.shape == y.shape else float("inf")
                r["max_abs_torch_fused"] = float(y.abs().max())
            # fuse_like: the same fusion, with the groups read off our fused file instead of given
            try:
                derived = fusion_torch.groups_of(model, fusion_torch.read(os.path.join(d, f"fused-{variant}.json"))[0]["model"])
                r["groups_derived"] = sorted(map(sorted, derived)) == sorted(map(sorted, case["groups"]))
                like = fusion_torch.fuse_like(model, os.path.join(d, f"fused-{variant}.json"))
                with torch.no_grad():
                    r["fuse_like_max_abs_diff"] = float((like(io["input"]) - y).abs().max())
            except Exception as e:  # reported, and the test says which
                r["groups_derived"], r["fuse_like_error"] = False, f"{type(e).__name__}: {e}"
    with open(os.path.join(out, "check.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    {"prepare": prepare, "check": check}[sys.argv[1]](sys.argv[2])
