"""Exports torchvision's quantizable resnet18 / resnet50 / mobilenet_v2 (float, eval, random weights) to ONNX at
Nx3x224x224 with a dynamic batch axis N, for tools/ort-bench (`--batch N` feeds N images to the same file). The files
are large and are not committed.
Run: /usr/bin/python3 tools/bench/export_onnx.py --out DIR [--models resnet18,resnet50,mobilenet_v2]"""
import argparse, os
import torch
import torchvision.models.quantization as qm

CTORS = {
    "resnet18": lambda: qm.resnet18(weights=None, quantize=False),
    "resnet50": lambda: qm.resnet50(weights=None, quantize=False),
    "mobilenet_v2": lambda: qm.mobilenet_v2(weights=None, quantize=False),
}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    for name in a.models.split(","):
        model = CTORS[name]().eval()
        path = os.path.join(a.out, name + ".onnx")
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, input_names=["input"], output_names=["output"],
                          opset_version=13,
                          # One file for latency (batch 1) and throughput (--batch N) runs: ONNX Runtime timed a fixed
                          # batch-8 export no faster than this one at batch 8 (see tools/ort-bench/Program.cs).
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        print(path)

if __name__ == "__main__":
    main()
