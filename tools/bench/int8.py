"""The int8 benchmark: our int8 forward beside our float forward, PyTorch's int8 (onednn) and float forward, and ONNX
Runtime's int8 QDQ forward, for torchvision's quantizable networks, side by side in one run on this machine.

Run from the repository root, after `dotnet build src/Fusion.Cli -c Release && dotnet build tools/ort-bench -c Release`:
    /usr/bin/python3 tools/bench/int8.py [--models resnet50,mobilenet_v2] [--batches 1,8] [--rounds 3] [--runs 7]
        [--threads 2] [--work DIR] [--json OUT]

Per network, once (reused when already in --work): torchvision's quantizable form (`quantize=False`, eval,
`fuse_model()`) exported in our model format with an input of 1x3x224x224, and four seeded N(0, 1) calibration images.
Then `fusion quantize --qconfig x86` writes our int8 model, and (when `fusion quantize` writes ONNX) its QDQ form for
ONNX Runtime. PyTorch quantizes the same fused float model with the same qconfig and calibration images (prepare,
calibrate, convert on the onednn engine this Debian build has). Then --rounds interleaved rounds, each of them per
network and batch: `fusion bench MODEL --quantized --json` (our int8 and float forwards), PyTorch's int8 and float
forwards in this process (torch.set_num_threads(--threads), no_grad), and tools/ort-bench on the QDQ file. Every value
is a median of --runs runs after warm-up; the table gives the median of the rounds and the rounds in brackets.
A benchmark, not a test: run it on a quiet machine (load average under 1); the output records the load average.
Needs Debian's python3-torch and python3-torchvision."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.ao.quantization as tq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
from fusion_torch.model_file import export  # noqa: E402
sys.path.insert(0, HERE)
from pytorch_bench import median_ms  # noqa: E402

FUSION = os.path.join(ROOT, "src", "Fusion.Cli", "bin", "Release", "net10.0", "fusion.dll")
ORT = os.path.join(ROOT, "tools", "ort-bench", "bin", "Release", "net10.0", "Fusion.Dsl.OrtBench.dll")
SIZE = 224
CALIBRATION_IMAGES = 4


def build(name):
    """torchvision's quantizable network, eval, fused as its fuse_model() does."""
    from torchvision.models import quantization as qm
    torch.manual_seed(0)
    model = getattr(qm, name)(weights=None, quantize=False).eval()
    model.fuse_model()
    return model


def prepare(name, work):
    """Exports the fused float model and the calibration images once; returns (float model, our int8 model, QDQ file
    or None, PyTorch's calibrated prepared model)."""
    folder = os.path.join(work, name)
    calibration = os.path.join(work, f"{name}_calibration.npy")
    model = build(name)
    if not os.path.exists(os.path.join(folder, "model.json")):
        export(model, folder, input_shape=[1, 3, SIZE, SIZE])
    if not os.path.exists(calibration):
        rng = np.random.default_rng(0)
        np.save(calibration, rng.normal(0.0, 1.0, size=(CALIBRATION_IMAGES, 3, SIZE, SIZE)).astype(np.float32))
    ours = os.path.join(work, f"{name}_int8")
    run(["dotnet", FUSION, "quantize", folder, "--qconfig", "x86", "--calibration", calibration, "--out", ours])
    qdq = os.path.join(work, f"{name}_int8.onnx")
    p = subprocess.run(["dotnet", FUSION, "quantize", folder, "--qconfig", "x86", "--calibration", calibration, "--out", qdq],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(f"  no QDQ file for {name}: {(p.stderr.strip().splitlines() or ['?'])[-1][:200]}", file=sys.stderr)
        qdq = None
    torch.backends.quantized.engine = "onednn"
    model.qconfig = tq.get_default_qconfig("x86")
    prepared = tq.prepare(model, inplace=False)
    with torch.no_grad():
        prepared(torch.from_numpy(np.load(calibration)))
    return model, ours, qdq, prepared


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    return p.stdout


def cpu_name():
    for line in run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,mobilenet_v2")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join("/tmp", "fusion-int8-bench"))
    ap.add_argument("--json")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(a.threads)
    models = a.models.split(",")
    batches = [int(b) for b in a.batches.split(",")]
    load = os.getloadavg()[0]
    subjects = {m: prepare(m, a.work) for m in models}
    cells = {}  # (model, batch, column) -> [per round]
    # One converted model per batch: PyTorch 1.13's onednn int8 mobilenet_v2 on 2 threads, run at batch 1, then fails at
    # batch 8 ("could not create a primitive descriptor for a reorder primitive"), and the other way round.
    converted = {(m, b): tq.convert(subjects[m][3], inplace=False) for m in models for b in batches}
    columns = ("ours int8", "ours float", "PyTorch int8", "PyTorch float", "ORT int8 QDQ")
    for r in range(a.rounds):
        for m in models:
            model, ours, qdq, _ = subjects[m]
            for b in batches:
                qmodel = converted[(m, b)]
                print(f"round {r + 1}/{a.rounds}: {m} batch {b}", file=sys.stderr)
                report = json.loads(run(["dotnet", FUSION, "bench", ours, "--quantized", "--json", "--batch", str(b),
                                         "--runs", str(a.runs), "--threads", str(a.threads)]))
                cells.setdefault((m, b, "ours int8"), []).append(report["forward_int8_ms"])
                cells.setdefault((m, b, "ours float"), []).append(report["forward_float_ms"])
                x = torch.randn(b, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
                with torch.no_grad():
                    cells.setdefault((m, b, "PyTorch int8"), []).append(median_ms(lambda: qmodel(x), a.runs, warmup=3))
                    cells.setdefault((m, b, "PyTorch float"), []).append(median_ms(lambda: model(x), a.runs, warmup=3))
                if qdq is not None:
                    p = subprocess.run(["dotnet", ORT, qdq, "--threads", str(a.threads), "--runs", str(a.runs), "--batch", str(b)],
                                       capture_output=True, text=True)
                    if p.returncode == 0:
                        cells.setdefault((m, b, "ORT int8 QDQ"), []).append(json.loads(p.stdout)["forward_ms"])
                    else:
                        cells.setdefault((m, b, "ORT int8 QDQ"), [])
    print(f"\n{cpu_name()}, {a.threads} threads, {a.rounds} rounds of medians of {a.runs} runs, load average {load:.2f} at the start; "
          f"{SIZE}x{SIZE} inputs, qconfig x86\n")
    print("| network | batch | " + " | ".join(columns) + " | ours int8 ÷ ours float | ours int8 ÷ PyTorch int8 |")
    print("|---|---|" + "---|" * (len(columns) + 2))
    summary = {}
    for m in models:
        for b in batches:
            row = []
            for c in columns:
                v = cells.get((m, b, c)) or []
                summary[f"{m}/{b}/{c}"] = v
                row.append(f"{statistics.median(v):.1f} ({', '.join(f'{t:.1f}' for t in v)})" if v else "n/a")
            i8 = statistics.median(cells[(m, b, "ours int8")])
            ratio_float = i8 / statistics.median(cells[(m, b, "ours float")])
            ratio_torch = i8 / statistics.median(cells[(m, b, "PyTorch int8")])
            print(f"| {m} | {b} | " + " | ".join(row) + f" | {ratio_float:.2f}x | {ratio_torch:.2f}x |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu_name(), "threads": a.threads, "load": load, "cells": summary}, f, indent=1)


if __name__ == "__main__":
    main()
