"""The speed of whole torchvision networks in the engine against PyTorch on the same machine, for the networks whose
operations issue 22 added (sigmoid, GELU, LayerNorm, permute, mean, chunk, attention, window functions): one row each,
ours (unfused and fused, `fusion bench MODEL --json`) beside PyTorch's eval forward, medians over interleaved rounds.

    dotnet build src/Fusion.Cli -c Release
    /usr/bin/python3 tools/breadth/speed.py [--models efficientnet_b0,convnext_tiny] [--size 224] [--rounds 3]
                                           [--runs 5] [--threads 2] [--work DIR]

Each network is exported once with `python3 -m fusion_torch export` (breadth_models: random weights and BatchNorm
statistics, eval mode). A benchmark, not a test: run it on a quiet machine (load average under 1)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "python"), HERE]
import breadth_models  # noqa: E402

DEFAULT = ["efficientnet_b0", "regnet_y_400mf", "mnasnet1_0", "convnext_tiny", "shufflenet_v2_x1_0", "inception_v3",
           "swin_t", "vit_b_16", "mobilenet_v3_large"]


def median_ms(fn, runs, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def torch_ms(name, size, threads, runs):
    torch.set_num_threads(threads)
    model = breadth_models.build(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return median_ms(lambda: model(x), runs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", help="folder for the exports (default: a temporary one)")
    p.add_argument("--fusion", default=os.path.join(ROOT, "src", "Fusion.Cli", "bin", "Release", "net10.0", "fusion.dll"))
    a = p.parse_args()
    names = a.models.split(",")
    work = a.work or tempfile.mkdtemp(prefix="fusion-speed-")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), HERE]))
    shape = f"1,3,{a.size},{a.size}"
    for n in names:
        out = os.path.join(work, n)
        if not os.path.exists(os.path.join(out, "model.json")):
            subprocess.run([sys.executable, "-m", "fusion_torch", "export", "breadth_models:build", "--args",
                            json.dumps({"name": n}), "--input-shape", shape, "--out", out], check=True, env=env,
                           capture_output=True, cwd=ROOT)
    ours = {n: [] for n in names}
    theirs = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names:
            print(f"round {r + 1}/{a.rounds}: {n}", file=sys.stderr, flush=True)
            res = subprocess.run(["dotnet", a.fusion, "bench", os.path.join(work, n), "--input-shape", shape, "--json",
                                  "--runs", str(a.runs), "--threads", str(a.threads)], check=True, capture_output=True,
                                 text=True, cwd=ROOT)
            ours[n].append(json.loads(res.stdout.strip().splitlines()[-1]))
            theirs[n].append(torch_ms(n, a.size, a.threads, a.runs))

    def cell(values):
        return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"

    print(f"| network | ours unfused, ms | ours fused, ms | PyTorch, ms | ours fused ÷ PyTorch |")
    print("|---|---|---|---|---|")
    for n in names:
        unfused = [o["forward_unfused_ms"] for o in ours[n]]
        fused = [o["forward_fused_ms"] for o in ours[n]]
        print(f"| {n} | {cell(unfused)} | {cell(fused)} | {cell(theirs[n])} | "
              f"{statistics.median(fused) / statistics.median(theirs[n]):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
