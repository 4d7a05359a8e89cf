"""Side-by-side rounds of `fusion bench` and PyTorch (tools/bench/pytorch_bench.py) on this machine, and one
`fusion bench --memory` per network; prints the README's performance table (medians over the rounds, every round's
value beside it so the spread shows).

Run from the repository root, after `dotnet build src/Fusion.Cli -c Release`:
    /usr/bin/python3 tools/bench/compare.py [--rounds 3] [--runs 7] [--threads 2] [--models resnet18,resnet50,mobilenet_v2]
                                            [--onnx DIR] [--batch N]
Needs Debian's python3-torch and python3-torchvision for the PyTorch side. With --onnx DIR (the exports of
tools/bench/export_onnx.py) each round also times ONNX Runtime through tools/ort-bench (build it with
`dotnet build tools/ort-bench -c Release`). With --batch N (default 1) every forward pass takes N images and a
throughput table (images per second) follows the tables in ms; the ms columns are then per batch."""
import argparse, json, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FUSION = os.path.join(ROOT, "src", "Fusion.Cli", "bin", "Release", "net10.0", "fusion.dll")
ORT = os.path.join(ROOT, "tools", "ort-bench", "bin", "Release", "net10.0", "Fusion.Dsl.OrtBench.dll")


def run_json(cmd):
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cell(values, fmt="{:.1f}"):
    """The median, then every round's value in brackets."""
    return fmt.format(statistics.median(values)) + " (" + ", ".join(fmt.format(v) for v in values) + ")"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    ap.add_argument("--onnx", help="folder of tools/bench/export_onnx.py's exports: also time ONNX Runtime")
    ap.add_argument("--batch", type=int, default=1, help="images per forward pass (1: latency; more: throughput too)")
    a = ap.parse_args()
    if a.onnx and not os.path.exists(ORT):
        sys.exit(f"{ORT} is missing: run `dotnet build tools/ort-bench -c Release` first")
    if not os.path.exists(FUSION):
        sys.exit(f"{FUSION} is missing: run `dotnet build src/Fusion.Cli -c Release` first")
    models = a.models.split(",")
    ours = {m: [] for m in models}
    torch = {m: [] for m in models}
    ort = {m: [] for m in models}
    for r in range(a.rounds):
        for m in models:
            print(f"round {r + 1}/{a.rounds}: {m}", file=sys.stderr)
            ours[m].append(run_json(["dotnet", FUSION, "bench", "--model", m, "--threads", str(a.threads),
                                     "--runs", str(a.runs), "--batch", str(a.batch), "--json"]))
            torch[m].append(run_json([sys.executable, os.path.join(HERE, "pytorch_bench.py"), "--model", m,
                                      "--threads", str(a.threads), "--runs", str(a.runs), "--batch", str(a.batch)]))
            if a.onnx:
                ort[m].append(run_json(["dotnet", ORT, os.path.join(a.onnx, m + ".onnx"), "--threads", str(a.threads),
                                        "--runs", str(a.runs), "--batch", str(a.batch)]))
    memory = {m: run_json(["dotnet", FUSION, "bench", "--model", m, "--threads", str(a.threads), "--memory", "--json"])
              for m in models}

    if a.batch > 1:
        # Images per second from each round's ms per batch; the median of those is the median round's throughput.
        def ips(rounds, key):
            return cell([a.batch * 1000 / x[key] for x in rounds])
        print(f"| batch {a.batch}, {a.threads} threads, images/s | ours fused | ours unfused | PyTorch fused |"
              + (" ONNX Runtime |" if a.onnx else ""))
        print("|---|---|---|---|" + ("---|" if a.onnx else ""))
        for m in models:
            print(f"| {m} | {ips(ours[m], 'forward_fused_ms')} | {ips(ours[m], 'forward_unfused_ms')} "
                  f"| {ips(torch[m], 'forward_fused_ms')} |" + (f" {ips(ort[m], 'forward_ms')} |" if a.onnx else ""))
        print()
    print(f"| {a.threads} threads, batch {a.batch}, ms | fuse: ours | fuse: PyTorch | fwd unfused: ours | fwd unfused: PyTorch "
          f"| fwd fused: ours | fwd fused: PyTorch |" + (" fwd: ONNX Runtime |" if a.onnx else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if a.onnx else ""))
    for m in models:
        o, t = ours[m], torch[m]
        print(f"| {m} ({o[0]['groups']} groups) | {cell([x['fuse_ms'] for x in o])} | {cell([x['fuse_ms'] for x in t])} "
              f"| {cell([x['forward_unfused_ms'] for x in o])} | {cell([x['forward_unfused_ms'] for x in t])} "
              f"| {cell([x['forward_fused_ms'] for x in o])} | {cell([x['forward_fused_ms'] for x in t])} |"
              + (f" {cell([x['forward_ms'] for x in ort[m]])} |" if a.onnx else ""))
    print()
    print("| ms | fuse + first fused forward: ours | PyTorch |")
    print("|---|---|---|")
    for m in models:
        print(f"| {m} | {cell([x['fuse_then_forward_ms'] for x in ours[m]])} | {cell([x['fuse_then_forward_ms'] for x in torch[m]])} |")
    print()
    print("| | fusion allocates | folded tensors | peak working set, fused forward | weights + activations | ratio |")
    print("|---|---|---|---|---|---|")
    mib = 1024 * 1024
    for m in models:
        o, mem = ours[m][0], memory[m]
        print(f"| {m} | {o['fuse_alloc_bytes'] / mib:.1f} MiB | {o['folded_bytes'] / mib:.1f} MiB "
              f"| {mem['peak_rss_fused_bytes'] / mib:.0f} MiB "
              f"| {(mem['weights_fused_bytes'] + mem['activation_bytes']) / mib:.0f} MiB | {mem['peak_ratio_fused']:.2f} |")


if __name__ == "__main__":
    main()
