"""Loads Fusion.Dsl's fused model back into PyTorch and checks it (docs/your-own-model.md, step 3):

    /usr/bin/python3 docs/examples/torch/load_back.py /tmp/tinynet /tmp/tinynet-fused.json

(each a model-format .json file or a directory holding model.json).

fuse_like applies torch's own fuse_modules with the groups the fused file shows and loads its state_dict with
strict=True; the fused model must compute what the original computes."""
import sys

import torch

import fusion_torch
import tinynet

original_path, fused_path = sys.argv[1], sys.argv[2]
model = tinynet.build()
model.load_state_dict(fusion_torch.read(original_path)[1], strict=True)   # the exported weights, PyTorch's keys
fused = fusion_torch.fuse_like(model, fused_path)
print("groups:", fusion_torch.groups_of(model, fusion_torch.read(fused_path)[0]["model"]))
x = torch.randn(2, 3, 32, 32)
with torch.no_grad():
    y, y_fused = model(x), fused(x)
diff = float((y - y_fused).abs().max())
print(f"max |fused - original| = {diff:.3g} (output max {float(y.abs().max()):.3g})")
sys.exit(0 if diff <= 1e-5 + 1e-4 * float(y.abs().max()) else 1)
