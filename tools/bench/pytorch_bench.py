"""PyTorch's side of tools/bench/compare.py: fuse_modules(inplace=False) with the groups our side fuses, a fresh fusion
plus its first forward pass, and the fused forward at each batch, on the same machine.

Run: /usr/bin/python3 tools/bench/pytorch_bench.py --model NAME [--groups-file FILE] [--threads 2]
                                                    [--batches 1,8] [--runs 7,3]
(needs Debian's python3-torch and python3-torchvision).

NAME is one of the zoo networks `fusion bench --model` knows (torchvision's quantizable resnet18 / resnet50 /
mobilenet_v2 in float, fused with the groups of their own fuse_model(), which are the zoo's), or any torchvision
classification network of tools/breadth/breadth_models.py (random weights and BatchNorm statistics, seed 0: the very
model `python3 -m fusion_torch export` wrote for our side), fused with the groups in --groups-file (`fusion auto MODEL
--json`'s list, what `fusion bench MODEL` fuses). A network without groups (convnext_tiny) has nothing to fuse:
fuse_modules refuses an empty list, so fuse_ms and fuse_then_forward_ms are null and the forward runs on the model.

--runs gives the timed runs per batch as compare.py reads it (one value for all, or one per --batches entry; by default
7 at the first batch and 3 at the others): PyTorch 1.13 takes about 3 s for one convnext_tiny image on a 2-core Zen 4,
so a batch of 8 there costs half a minute a pass.

Prints one JSON object: engine, model, threads, groups, batches, runs, fuse_ms and fuse_then_forward_ms (at the first
batch, with its runs), and forward_fused_ms: {batch: ms per batch}. Every time is the median of the runs after warm-up.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch.ao.quantization import fuse_modules

from compare import runs_per_batch  # compare.py's reading of --runs, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The zoo's groups come from fuse_model() through the fixtures' recorder; breadth_models builds the other networks.
sys.path[:0] = [os.path.join(ROOT, "..", "shared", "tools", "pytorch-fixtures"), os.path.join(ROOT, "tools", "breadth")]

ZOO = ("resnet18", "resnet50", "mobilenet_v2")


def zoo_model(name):
    import torchvision.models.quantization as qm
    return getattr(qm, name)(weights=None, quantize=False).eval()


def model_and_groups(name, groups_file):
    """The eval model and the groups to fuse: fuse_model()'s for a zoo network, --groups-file's for any other."""
    if name in ZOO and not groups_file:
        from netcases import fuse_list_of
        torch.manual_seed(0)
        groups = fuse_list_of(zoo_model(name))  # fuse_model() fuses in place: record on one copy, time another
        torch.manual_seed(0)
        return zoo_model(name), groups
    if not groups_file:
        sys.exit(f"pytorch_bench.py: {name} is not a zoo network ({', '.join(ZOO)}): give --groups-file "
                 "(the list `fusion auto MODEL --json` prints)")
    import breadth_models
    with open(groups_file) as f:
        groups = json.load(f)
    return breadth_models.build(name), groups


def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--groups-file", help="the groups to fuse, as `fusion auto MODEL --json` prints them")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1", help="comma-separated images per forward pass, e.g. 1,8")
    ap.add_argument("--runs", help="timed runs: one count, or one per batch (default 7 at the first batch, 3 at the others)")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    if any(not 1 <= b <= 64 for b in batches):  # the bound of `fusion bench --batch`
        ap.error(f"--batches takes integers from 1 to 64, got {a.batches}")
    try:
        runs = runs_per_batch(a.runs, batches)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(a.threads)
    model, groups = model_and_groups(a.model, a.groups_file)
    torch.manual_seed(0)
    inputs = {b: torch.randn(b, 3, 224, 224) for b in batches}
    first = inputs[batches[0]]
    fuse_ms = fuse_then_forward_ms = None
    if groups:
        # Outside no_grad, as a user calls it.
        fuse_ms = median_ms(lambda: fuse_modules(model, groups, inplace=False), runs[0], warmup=1)
    with torch.no_grad():
        if groups:
            # A fresh fusion and the first pass through it, as `fusion bench` reports fuse_then_forward_ms.
            fuse_then_forward_ms = median_ms(lambda: fuse_modules(model, groups, inplace=False)(first), runs[0], warmup=1)
        fused = fuse_modules(model, groups, inplace=False) if groups else model
        # Two warm-up passes at the first batch, as this script always took; one at larger ones, where a pass of a slow
        # network costs tens of seconds and one pass has created oneDNN's primitives for that batch's shapes.
        forward = {str(b): round(median_ms(lambda: fused(inputs[b]), n, warmup=2 if i == 0 else 1), 3)
                   for i, (b, n) in enumerate(zip(batches, runs))}
    print(json.dumps({"engine": "pytorch " + torch.__version__, "model": a.model, "threads": a.threads,
                      "groups": len(groups), "batches": batches, "runs": runs,
                      "fuse_ms": None if fuse_ms is None else round(fuse_ms, 3),
                      "fuse_then_forward_ms": None if fuse_then_forward_ms is None else round(fuse_then_forward_ms, 3),
                      "forward_fused_ms": forward}))


if __name__ == "__main__":
    main()
