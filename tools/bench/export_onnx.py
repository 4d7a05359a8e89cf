"""Exports networks to ONNX at Nx3x224x224 with a dynamic batch axis N, for tools/ort-bench (`--batch N` feeds N images
to the same file): the zoo networks (torchvision's quantizable resnet18 / resnet50 / mobilenet_v2 in float, eval, random
weights) and any torchvision classification network of tools/breadth/breadth_models.py (random weights and BatchNorm
statistics, seed 0: the same model `python3 -m fusion_torch export breadth_models:build` writes for our side). Opset 17,
which has LayerNormalization as one operator (convnext_tiny's). The files are large and are not committed.
Run: /usr/bin/python3 tools/bench/export_onnx.py --out DIR [--models resnet18,resnet50,mobilenet_v2,efficientnet_b0]"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "breadth"))

ZOO = ("resnet18", "resnet50", "mobilenet_v2")


def build(name):
    """The eval model of a zoo network or of a breadth_models network."""
    if name in ZOO:
        import torchvision.models.quantization as qm
        torch.manual_seed(0)
        return getattr(qm, name)(weights=None, quantize=False).eval()
    import breadth_models
    return breadth_models.build(name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default=",".join(ZOO))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.models.split(","):
        model = build(name)
        path = os.path.join(a.out, name + ".onnx")
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, input_names=["input"], output_names=["output"],
                          opset_version=17,
                          # One file for latency (batch 1) and throughput (--batch N) runs: ONNX Runtime timed a fixed
                          # batch-8 export no faster than this one at batch 8 (see tools/ort-bench/Program.cs).
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        print(path)


if __name__ == "__main__":
    main()
