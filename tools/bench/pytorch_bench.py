"""Side-by-side reference for `fusion bench`: PyTorch's own fuse_modules(inplace=False) and forward times on the
same machine, for torchvision's quantizable resnet18 / resnet50 / mobilenet_v2 with the groups of their fuse_model().
Run: /usr/bin/python3 tools/bench/pytorch_bench.py --model resnet18 [--threads 2] [--runs 5] [--batch 1]
(needs Debian's python3-torch and python3-torchvision). Prints one JSON object with the keys `fusion bench --json` uses
(forward times per batch of --batch images, and images_per_s / images_per_s_unfused)."""
import argparse, json, statistics, sys, time, os
import torch
import torchvision.models.quantization as qm
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "tools", "pytorch-fixtures"))
from netcases import fuse_list_of
from torch.ao.quantization import fuse_modules

CTORS = {
    "resnet18": lambda: qm.resnet18(weights=None, quantize=False),
    "resnet50": lambda: qm.resnet50(weights=None, quantize=False),
    "mobilenet_v2": lambda: qm.mobilenet_v2(weights=None, quantize=False),
}

def median_ms(fn, runs, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(CTORS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    if not 1 <= a.batch <= 64:  # the bound of `fusion bench --batch`
        ap.error(f"--batch takes an integer from 1 to 64, got {a.batch}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    groups = fuse_list_of(CTORS[a.model]().eval())
    model = CTORS[a.model]().eval()
    x = torch.randn(a.batch, 3, 224, 224)
    fuse_ms = median_ms(lambda: fuse_modules(model, groups, inplace=False), a.runs, warmup=1)
    fused = fuse_modules(model, groups, inplace=False)
    with torch.no_grad():
        # A fresh fusion and the first pass through it, as `fusion bench` reports fuse_then_forward_ms.
        fuse_then_forward = median_ms(lambda: fuse_modules(model, groups, inplace=False)(x), a.runs, warmup=1)
        fwd_unfused = median_ms(lambda: model(x), a.runs)
        fwd_fused = median_ms(lambda: fused(x), a.runs)
    print(json.dumps({"engine": "pytorch " + torch.__version__, "model": a.model, "fuse_ms": round(fuse_ms, 3),
                      "forward_unfused_ms": round(fwd_unfused, 3), "forward_fused_ms": round(fwd_fused, 3),
                      "fuse_then_forward_ms": round(fuse_then_forward, 3),
                      "threads": a.threads, "groups": len(groups), "runs": a.runs, "batch": a.batch,
                      "images_per_s": round(a.batch * 1000 / fwd_fused, 2),
                      "images_per_s_unfused": round(a.batch * 1000 / fwd_unfused, 2)}))

if __name__ == "__main__":
    main()
