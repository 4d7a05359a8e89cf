"""Fixtures for torchvision 0.14's quantizable networks through the eager post-training flow (NetworkTests.fs): each
network is built with quantize=False (random weights, BatchNorm statistics randomized), fused with its fuse_model() in
eval mode, exported with the repository's exporter, prepared with the x86 qconfig, calibrated on seeded random batches
and converted by PyTorch 1.13 on the onednn engine, exactly as ptq_fixtures.py does for resnet18 (whose case() this
reuses): the same JSON layout, with every observer's float activations and every quantized layer's integer output.

Usage: /usr/bin/python3 network_fixtures.py OUT.json [NAME ...]   (default: every network)"""
import json
import os
import sys
import warnings

import torch

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptq_fixtures  # noqa: E402


def network(name, **kwargs):
    def build():
        import torchvision.models.quantization as tvq
        return getattr(tvq, name)(weights=None, quantize=False, **kwargs)
    return build


def fuse(m):
    m.fuse_model()
    return m


# name, builder, input side (inception_v3 needs at least 75 pixels), seed. googlenet and inception_v3 are built with
# init_weights=True, which their weights=None default warns about.
NETWORKS = [
    ("resnet50", network("resnet50"), 64, 60),
    ("mobilenet_v2", network("mobilenet_v2"), 64, 61),
    ("shufflenet_v2", network("shufflenet_v2_x1_0"), 64, 62),
    ("googlenet", network("googlenet", init_weights=True), 64, 63),
    ("inception_v3", network("inception_v3", init_weights=True), 80, 64),
    ("mobilenet_v3_large", network("mobilenet_v3_large"), 64, 65),
]


def main(out, names):
    ptq_fixtures.ROOT = os.path.dirname(os.path.abspath(out))
    cases = [ptq_fixtures.case(f"{name}/x86", build, "x86", (2, 3, side, side), 2, fuse, seed)
             for name, build, side, seed in NETWORKS if not names or name in names]
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "engine": torch.backends.quantized.engine, "cases": cases}, f)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
