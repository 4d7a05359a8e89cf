"""Exports torchvision networks through fusion_torch's own export command and writes PyTorch's output on one seeded
input beside each, for the Interop.TorchvisionForward tests (one process: torch is imported once).

    python3 torchvision_forward.py OUT FACTORY:NAME:SIZE ...

FACTORY is breadth_models (tools/breadth: torchvision's builders by name, random BatchNorm statistics) or
roundtrip_models (this folder: NAME is a factory function). Writes OUT/NAME/model.json (+ .safetensors), OUT/NAME/x.npy
and OUT/NAME/y.npy."""
import json
import os
import sys

import numpy as np
import torch

import breadth_models
import roundtrip_models
from fusion_torch.__main__ import main as fusion_torch_main


def build(factory, name):
    return breadth_models.build(name) if factory == "breadth_models" else getattr(roundtrip_models, name)()


def main(out, specs):
    for spec in specs:
        factory, name, size = spec.split(":")
        d = os.path.join(out, name)
        args = ["export", f"{factory}:build", "--args", json.dumps({"name": name})] if factory == "breadth_models" \
            else ["export", f"{factory}:{name}"]
        code = fusion_torch_main(args + ["--input-shape", f"1,3,{size},{size}", "--out", d])
        if code != 0:
            raise SystemExit(f"export of {name} failed (exit {code})")
        model = build(factory, name)
        x = torch.randn(1, 3, int(size), int(size), generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            y = model(x)
        np.save(os.path.join(d, "x.npy"), x.numpy())
        np.save(os.path.join(d, "y.npy"), y.numpy())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
