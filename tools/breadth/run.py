"""The breadth table: every torchvision classification network through the whole user workflow, one row each.

    dotnet build src/Fusion.Cli -c Release
    /usr/bin/python3 tools/breadth/run.py [--models resnet18,vit_b_16 | --ci] [--size 224] [--work DIR] [--json OUT]

Per network (random weights and BatchNorm statistics, eval mode, one image of --size):
  export   python3 -m fusion_torch export tools/breadth/breadth_models:build (the exporter's own command)
  auto     fusion auto MODEL --out FUSED (for torchvision.models.quantization's float networks, quantized_*: fusion fuse
           with the groups their own fuse_model() fuses): "verified" when the engine checked fused = unfused, or
           "opaque" when the model carries operations the engine does not compute (the row says which)
  torch    python3 -m fusion_torch verify MODEL FUSED: PyTorch's own fuse_modules with our weights, strict load,
           equal to the original
  engine   fusion run on the unfused and the fused model against PyTorch's output (fixture tolerance for networks:
           |a - b| <= 1e-4 + 1e-3 max|b|)
  onnx     torch.onnx.export twice (opset 17 with torch's defaults, which fold BatchNorm into Conv; opset 13 with
           training=PRESERVE and no constant folding, which keeps every BatchNormalization), then fusion auto X.onnx
           --out X-fused.onnx on each (import, fuse, write back into the file's graph); "ok" when both are written.
           Then ONNX Runtime on each written-back file against torch's (tools/breadth/ort_compare.fsx through dotnet fsi;
           python3 here has no onnxruntime): "ok (largest difference)" or what went wrong. --no-ort leaves that to the
           test suite (Interop.Breadth runs each pair itself). --clean removes each network's files after its row.
Each step's status and, when it failed, its first error line. Exits 0 whatever the rows say: it reports."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "python"), HERE]
import breadth_models  # noqa: E402

CI_SUBSET = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "shufflenet_v2_x0_5",
             "squeezenet1_1", "regnet_y_400mf", "quantized_mobilenet_v2", "quantized_googlenet"]
RTOL, ATOL = 1e-3, 1e-4


def run(cmd, timeout):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), HERE]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out after {timeout} s"


def first_line(text):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:300] if lines else ""


def opaque_reason(text):
    """The operation an engine refusal names, shortly: `torch.nn.Sigmoid`, `.permute()`, `torch.nn.functional.gelu`."""
    for pattern in (r"a ([\w.]+) carried as an opaque module", r"calls the tensor method (\.\w+\(\))",
                    r"calls the function ([\w.]+),"):
        m = re.search(pattern, text)
        if m:
            return m.group(1)
    return first_line(text)[:120]


def close(a, b):
    diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    return diff <= ATOL + RTOL * float(np.abs(b).max()), diff


def row(name, size, work, fusion, timeout, ort, opsets=None):
    r = {"network": name}
    d = os.path.join(work, name)
    fused = d + "-fused.json"
    shape = f"1,3,{size},{size}"
    code, out, err = run([sys.executable, "-m", "fusion_torch", "export", "breadth_models:build", "--args",
                          json.dumps({"name": name}), "--input-shape", shape, "--out", d], timeout)
    r["export"] = "ok" if code == 0 else "FAIL: " + first_line(err)
    if code != 0:
        return r
    if name in breadth_models.QUANTIZABLE:
        # torchvision's quantizable networks are fused with the groups their own fuse_model() uses.
        own = breadth_models.fuse_model_groups(name)
        code, out, err = run(fusion + ["fuse", d, "--groups", json.dumps(own), "--out", fused], timeout)
        groups = f"{len(own)} (fuse_model)"
    else:
        code, out, err = run(fusion + ["auto", d, "--out", fused], timeout)
        groups = next((l.split(":")[1].split("fusable")[0].strip() for l in out.splitlines() if "fusable group" in l), "?")
    if code != 0:
        r["auto"] = "FAIL: " + first_line(err or out)
        return r
    skipped = next((l for l in out.splitlines() if l.startswith("verification skipped:")), None)
    r["groups"] = groups
    r["auto"] = "verified" if "max |fused - unfused|" in out else (f"unverified ({opaque_reason(skipped)})" if skipped else "?")
    code, out, err = run([sys.executable, "-m", "fusion_torch", "verify", d, fused], timeout)
    r["torch"] = "equivalent" if code == 0 else "FAIL: " + first_line(err or out)
    # The engine against PyTorch, unfused and fused.
    model = breadth_models.build(name)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y = model(x).numpy()
    xin = os.path.join(work, name + "-x.npy")
    np.save(xin, x.numpy())
    for label, path in (("engine", d), ("engine_fused", fused)):
        yout = os.path.join(work, f"{name}-{label}.npy")
        code, out, err = run(fusion + ["run", path, "--input", xin, "--out", yout], timeout)
        if code != 0:
            r[label] = f"unsupported ({opaque_reason(err)})" if "does not evaluate" in err else "FAIL: " + first_line(err)[:200]
            continue
        ok, diff = close(np.load(yout), y)
        r[label] = f"{'ok' if ok else 'WRONG'} ({diff:.2g})"
    for suffix, opset, kwargs in variants(opsets):
        onnx_path = os.path.join(work, name + suffix + ".onnx")
        try:
            torch.onnx.export(model, x, onnx_path, opset_version=opset, input_names=["input"], output_names=["output"], **kwargs)
        except Exception as e:  # torch cannot export it: not ours to fix, but the row says so
            r["onnx"] = f"torch.onnx.export (opset {opset}) failed: " + str(e).splitlines()[0][:200]
            return r
        code, out, err = run(fusion + ["auto", onnx_path, "--out", os.path.join(work, name + suffix + "-fused.onnx")], timeout)
        if code != 0:
            r["onnx"] = f"FAIL (opset {opset}): " + first_line(err or out)
            return r
    r["onnx"] = "ok"
    if ort:
        r["onnx"] = ort_cell(name, work, timeout, [s for s, _, _ in variants(opsets)])
    return r


def variants(opsets):
    """The torch.onnx.export files of a row: (file suffix, opset, export arguments). By default two: opset 17 with
    torch's defaults (BatchNorm folded into Conv) and opset 13 with training=PRESERVE and no constant folding (every
    BatchNormalization kept); with --opsets, both forms at each opset given."""
    preserve = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}
    if not opsets:
        return [("", 17, {}), ("-bn", 13, preserve)]
    return [v for o in opsets for v in ((f"-o{o}", o, {}), (f"-o{o}-bn", o, preserve))]


def ort_cell(name, work, timeout, suffixes):
    """ONNX Runtime on every written-back file against torch's (tools/breadth/ort_compare.fsx): "ok (largest
    difference)", or what went wrong."""
    triples = [[os.path.join(work, name + s + ".onnx"), os.path.join(work, name + s + "-fused.onnx"),
                os.path.join(work, name + "-x.npy")] for s in suffixes]
    code, out, err = run(["dotnet", "fsi", os.path.join(HERE, "ort_compare.fsx")] + [p for t in triples for p in t], timeout)
    worst = 0.0
    for (original, _, _), suffix in zip(triples, [s or "folded" for s in suffixes]):
        got = next((l.split("\t")[1:] for l in out.splitlines() if l.startswith(original + "\t")), None)
        if got is None or got[0] == "ERROR":
            return "ONNX Runtime: " + (got[1] if got else first_line(err or out) or "no result")
        diff, scale = float(got[0]), float(got[1])
        if diff > ATOL + RTOL * scale:
            return f"WRONG in ONNX Runtime ({suffix}: {diff:.2g})"
        worst = max(worst, diff)
    return f"ok ({worst:.2g})"


def clean(name, work):
    """Removes a network's files (the largest networks take gigabytes each), keeping none."""
    import glob
    import shutil
    for path in glob.glob(os.path.join(work, name + "*")):
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated names (default: every classification network)")
    p.add_argument("--ci", action="store_true", help=f"the CI subset: {', '.join(CI_SUBSET)}")
    p.add_argument("--size", type=int, default=224, help="image size (default 224)")
    p.add_argument("--work", help="folder for the files (default: a temporary one)")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--timeout", type=int, default=600, help="seconds per step")
    p.add_argument("--fusion", default=os.path.join(ROOT, "src", "Fusion.Cli", "bin", "Release", "net10.0", "fusion.dll"))
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime on the written-back files (the test suite runs it itself)")
    p.add_argument("--opsets", help="comma-separated ONNX opsets: export both forms (folded, and PRESERVE without "
                   "folding) at each, instead of the default opset 17 folded and opset 13 PRESERVE")
    p.add_argument("--clean", action="store_true", help="remove each network's files after its row (the whole list needs tens of GB otherwise)")
    a = p.parse_args()
    names = CI_SUBSET if a.ci else (a.models.split(",") if a.models else breadth_models.NAMES)
    work = a.work or tempfile.mkdtemp(prefix="fusion-breadth-")
    os.makedirs(work, exist_ok=True)
    fusion = ["dotnet", a.fusion]
    rows = []
    cols = ["network", "groups", "export", "auto", "torch", "engine", "engine_fused", "onnx"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for n in names:
        t = time.time()
        r = row(n, a.size, work, fusion, a.timeout, not a.no_ort, [int(o) for o in a.opsets.split(",")] if a.opsets else None)
        r["seconds"] = round(time.time() - t, 1)
        rows.append(r)
        if a.clean:
            clean(n, work)
        print("| " + " | ".join(str(r.get(c, "")).replace("|", "/") for c in cols) + " |", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
