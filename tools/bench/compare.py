"""The per-CPU performance table: ours, ONNX Runtime's and PyTorch's fused forward at each batch, fuse time, fuse + first
forward and our peak working set, side by side in one run, as a README section headed by the CPU it ran on.

Run from the repository root, after `dotnet build src/Fusion.Cli -c Release && dotnet build tools/ort-bench -c Release`:
    /usr/bin/python3 tools/bench/compare.py [--models resnet18,resnet50,mobilenet_v2,efficientnet_b0,convnext_tiny]
        [--batches 1,8] [--rounds 3] [--runs 7,3] [--threads 2] [--work DIR] [--json OUT] [--update README.md]
    /usr/bin/python3 tools/bench/compare.py --from-json OUT [--update README.md]     # render a saved run again

Per network, once: the exports into --work (reused when already there): for a network that is not in the zoo
(`fusion bench --model`: resnet18, resnet50, mobilenet_v2), our model format with `python3 -m fusion_torch export
tools/breadth/breadth_models:build` and its groups with `fusion auto --json`; for every network, the ONNX file of
tools/bench/export_onnx.py. Then --rounds interleaved rounds, each of them per network: `fusion bench --json` at each
batch, tools/ort-bench at each batch, and tools/bench/pytorch_bench.py once for all batches (fuse_modules(inplace=False)
with the groups ours fuses, a fresh fusion plus its first forward, the fused forward at each batch). Last, one
`fusion bench --memory --json` per network and batch. Every value is a median of --runs runs after warm-up; every cell
the median of the rounds, the rounds in brackets. A network without groups (convnext_tiny) has nothing to fuse: its
fuse columns say so.

--runs: one count for every batch, or one per --batches entry (default: 7 at the first batch, 3 at the others; PyTorch
1.13 takes about 3 s per convnext_tiny image on a 2-core Zen 4, so one pass of a batch of 8 there takes half a minute).
--update FILE replaces this CPU's section of FILE (between its HTML comment markers, keyed by vendor, family, model and
the engine's ISA) and leaves every other machine's section alone; a CPU seen for the first time gets a new section above
the line holding END_ANCHOR. A benchmark, not a test: run it on a quiet machine (load average under 1); the section
records the load average at the start.
Needs Debian's python3-torch and python3-torchvision (PyTorch's side and the exports); this script itself only the
standard library."""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FUSION = os.path.join(ROOT, "src", "Fusion.Cli", "bin", "Release", "net10.0", "fusion.dll")
ORT = os.path.join(ROOT, "tools", "ort-bench", "bin", "Release", "net10.0", "Fusion.Dsl.OrtBench.dll")
ZOO = ("resnet18", "resnet50", "mobilenet_v2")
DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v2,efficientnet_b0,convnext_tiny"
END_ANCHOR = "<!-- per-cpu sections end -->"
MIB = 1024 * 1024

# Microarchitectures by (vendor, family, model), only those named for certain; others show family and model alone.
MICROARCHITECTURES = {
    ("GenuineIntel", 6, 85): "Skylake-SP or Cascade Lake",
    ("GenuineIntel", 6, 106): "Ice Lake-SP",
    ("GenuineIntel", 6, 143): "Sapphire Rapids",
    ("GenuineIntel", 6, 207): "Emerald Rapids",
    ("AuthenticAMD", 23, 49): "Zen 2",
    ("AuthenticAMD", 25, 1): "Zen 3",
    ("AuthenticAMD", 25, 17): "Zen 4",
}


# ---- the README section ----------------------------------------------------------------------------------------------

def markers(key):
    """The HTML comments that open and close a CPU's section.

    >>> markers("GenuineIntel family 6 model 106, AVX-512")
    ('<!-- per-cpu: GenuineIntel family 6 model 106, AVX-512 -->', '<!-- /per-cpu: GenuineIntel family 6 model 106, AVX-512 -->')
    """
    return f"<!-- per-cpu: {key} -->", f"<!-- /per-cpu: {key} -->"


def update_readme(text, key, section):
    """`text` with the section of the CPU `key` replaced by `section`, every other byte as it was; a key not there yet
    gets its section above the line holding END_ANCHOR. Raises ValueError, changing nothing, when the key's markers are
    not one opening followed by one closing, or when a new key finds no anchor.

    >>> doc = "# Perf\\n\\n<!-- per-cpu: Intel -->\\nold Intel\\n<!-- /per-cpu: Intel -->\\n\\n" + END_ANCHOR + "\\nrest\\n"
    >>> print(update_readme(doc, "AMD", "AMD table"))
    # Perf
    <BLANKLINE>
    <!-- per-cpu: Intel -->
    old Intel
    <!-- /per-cpu: Intel -->
    <BLANKLINE>
    <!-- per-cpu: AMD -->
    AMD table
    <!-- /per-cpu: AMD -->
    <BLANKLINE>
    <!-- per-cpu sections end -->
    rest
    <BLANKLINE>
    >>> print(update_readme(update_readme(doc, "AMD", "AMD table"), "AMD", "AMD again").count("AMD table"))
    0
    >>> update_readme(doc, "Intel", "new Intel") == doc.replace("old Intel", "new Intel")
    True
    >>> update_readme("no anchor here", "AMD", "x")
    Traceback (most recent call last):
    ...
    ValueError: no section for AMD and no line with <!-- per-cpu sections end --> to add one above
    """
    begin, end = markers(key)
    block = begin + "\n" + section.strip("\n") + "\n" + end
    opened, closed = text.count(begin), text.count(end)
    if opened == 0 and closed == 0:
        at = text.find(END_ANCHOR)
        if at < 0:
            raise ValueError(f"no section for {key} and no line with {END_ANCHOR} to add one above")
        at = text.rfind("\n", 0, at) + 1  # the start of the anchor's line
        return text[:at] + block + "\n\n" + text[at:]
    start = text.find(begin)
    stop = text.find(end, start)
    if opened != 1 or closed != 1 or stop < 0:
        raise ValueError(f"the section of {key} is malformed: {opened} opening and {closed} closing marker(s), "
                         "expected one of each, the opening first")
    return text[:start] + block + text[stop + len(end):]


# ---- the CPU -------------------------------------------------------------------------------------------------------

def parse_lscpu(text):
    """`lscpu`'s "Name: value" lines as a dict (first occurrence wins).

    >>> f = parse_lscpu("Vendor ID:    GenuineIntel\\nModel name:   Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\\n"
    ...                 "CPU family:   6\\nModel:        106\\nCPU(s):       2\\nL3 cache:     54 MiB (1 instance)\\n")
    >>> describe_cpu(f)["key"]
    'GenuineIntel family 6 model 106'
    >>> describe_cpu(f)["microarchitecture"]
    'Ice Lake-SP'
    """
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    return fields


def microarchitecture(vendor, family, model):
    """The microarchitecture of MICROARCHITECTURES for the CPU, or None.

    >>> microarchitecture("AuthenticAMD", "25", "17"), microarchitecture("GenuineIntel", "6", "1")
    ('Zen 4', None)
    """
    return MICROARCHITECTURES.get((vendor, int(family) if str(family).isdigit() else -1,
                                   int(model) if str(model).isdigit() else -1))


def cores(fields):
    """Physical cores: cores per socket times sockets ("?" when lscpu does not say).

    >>> cores({"Core(s) per socket": "16", "Socket(s)": "2"}), cores({})
    ('32', '?')
    """
    per, sockets = fields.get("Core(s) per socket", ""), fields.get("Socket(s)", "")
    return str(int(per) * int(sockets)) if per.isdigit() and sockets.isdigit() else "?"


def describe_cpu(fields):
    """The CPU facts the section names, from `lscpu`'s fields; `key` (vendor, family, model) identifies the machine
    type whose section a run replaces."""
    vendor, family, model = fields.get("Vendor ID", "?"), fields.get("CPU family", "?"), fields.get("Model", "?")
    return {"model_name": fields.get("Model name", "?"), "vendor": vendor, "family": family, "model": model,
            "stepping": fields.get("Stepping", "?"), "cpus": fields.get("CPU(s)", "?"), "cores": cores(fields),
            "threads_per_core": fields.get("Thread(s) per core", "?"), "l2": fields.get("L2 cache", "?"),
            "l3": fields.get("L3 cache", "?"), "microarchitecture": microarchitecture(vendor, family, model),
            "key": f"{vendor} family {family} model {model}"}


def cpu_info():
    out = subprocess.run(["lscpu"], capture_output=True, text=True, env=dict(os.environ, LC_ALL="C")).stdout
    return describe_cpu(parse_lscpu(out))


# ---- measuring -----------------------------------------------------------------------------------------------------

def progress(text, started):
    print(f"[{time.time() - started:6.0f} s] {text}", file=sys.stderr, flush=True)


def run_json(cmd, env=None):
    """The last line of the command's output as JSON, or {"error": ...} with the last line it wrote to stderr, so one
    failed measurement does not lose a long run."""
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        last = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1]
        return {"error": f"{os.path.basename(cmd[1])} exited {p.returncode}: {last[:300]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def python_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), os.path.join(ROOT, "tools", "breadth")]))


def prepare(models, work, started):
    """Exports what is missing from `work`: our model format and groups for every network outside the zoo, and every
    network's ONNX file. Returns {network: error} for those that could not be exported."""
    errors = {}
    for m in models:
        if m in ZOO:
            continue
        folder = os.path.join(work, m)
        if not os.path.exists(os.path.join(folder, "model.json")):
            progress(f"exporting {m} (python3 -m fusion_torch export)", started)
            p = subprocess.run([sys.executable, "-m", "fusion_torch", "export", "breadth_models:build", "--args",
                                json.dumps({"name": m}), "--input-shape", "1,3,224,224", "--out", folder],
                               cwd=ROOT, capture_output=True, text=True, env=python_env())
            if p.returncode != 0:
                errors[m] = "export: " + (p.stderr.strip().splitlines() or ["?"])[-1][:300]
                continue
        # The groups `fusion bench MODEL` fuses (discovery's), for PyTorch's side; always fresh, it takes a second.
        p = subprocess.run(["dotnet", FUSION, "auto", folder, "--json"], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            errors[m] = "fusion auto: " + (p.stderr.strip().splitlines() or ["?"])[-1][:300]
            continue
        with open(os.path.join(work, m + ".groups.json"), "w") as f:
            f.write(p.stdout.strip().splitlines()[-1])
    missing = [m for m in models if m not in errors and not os.path.exists(os.path.join(work, "onnx", m + ".onnx"))]
    if missing:
        progress(f"exporting {', '.join(missing)} to ONNX (tools/bench/export_onnx.py)", started)
        p = subprocess.run([sys.executable, os.path.join(HERE, "export_onnx.py"), "--out", os.path.join(work, "onnx"),
                            "--models", ",".join(missing)], cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            for m in missing:
                if not os.path.exists(os.path.join(work, "onnx", m + ".onnx")):
                    errors[m] = "ONNX export: " + (p.stderr.strip().splitlines() or ["?"])[-1][:300]
    return errors


def runs_per_batch(text, batches):
    """--runs: one count for every batch, or one per batch; by default 7 at the first batch and 3 at the others.

    >>> runs_per_batch(None, [1, 8]), runs_per_batch("5", [1, 8]), runs_per_batch("7,2", [1, 8])
    ([7, 3], [5, 5], [7, 2])
    """
    if text is None:
        return [7] + [3] * (len(batches) - 1)
    values = [int(v) for v in text.split(",")]
    if len(values) == 1:
        values *= len(batches)
    if len(values) != len(batches) or min(values) < 1:
        raise ValueError(f"--runs takes one positive count, or one per batch ({len(batches)}), got {text}")
    return values


def measure(a, batches, runs, models, started):
    work = a.work or tempfile.mkdtemp(prefix="fusion-percpu-")
    os.makedirs(work, exist_ok=True)
    load = os.getloadavg()[0]
    if load >= 1:
        progress(f"warning: load average {load:.2f}; the issue asks for under 1 before a series", started)
    errors = prepare(models, work, started)
    threads = str(a.threads)
    results = {m: {"ours": {str(b): [] for b in batches}, "ort": {str(b): [] for b in batches}, "torch": [], "memory": {}}
               for m in models}

    def ours_cmd(m):
        return ["dotnet", FUSION, "bench"] + (["--model", m] if m in ZOO else [os.path.join(work, m)]) + ["--threads", threads]

    for r in range(a.rounds):
        for m in models:
            if m in errors:
                continue
            progress(f"round {r + 1}/{a.rounds}: {m}", started)
            for b, n in zip(batches, runs):
                results[m]["ours"][str(b)].append(run_json(ours_cmd(m) + ["--runs", str(n), "--batch", str(b), "--json"]))
                results[m]["ort"][str(b)].append(run_json(["dotnet", ORT, os.path.join(work, "onnx", m + ".onnx"),
                                                           "--threads", threads, "--runs", str(n), "--batch", str(b)]))
            groups = [] if m in ZOO else ["--groups-file", os.path.join(work, m + ".groups.json")]
            results[m]["torch"].append(run_json([sys.executable, os.path.join(HERE, "pytorch_bench.py"), "--model", m]
                                                + groups + ["--threads", threads, "--batches", ",".join(map(str, batches)),
                                                            "--runs", ",".join(map(str, runs))], env=python_env()))
    for m in models:
        if m in errors:
            continue
        progress(f"peak working set: {m}", started)
        for b in batches:
            results[m]["memory"][str(b)] = run_json(ours_cmd(m) + ["--memory", "--batch", str(b), "--json"])
    first = next((x for m in models if m not in errors for x in results[m]["ours"][str(batches[0])] if "isa" in x), {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "cpu": dict(cpu_info(), isa=first.get("isa", "?"), avx512_present=first.get("avx512_present")),
        "settings": {"models": models, "batches": batches, "runs": runs, "rounds": a.rounds, "threads": a.threads,
                     "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)), "load_average": round(load, 2),
                     "commit": commit + (" with uncommitted changes" if dirty else ""), "runtime": first.get("runtime", "?"),
                     "command": " ".join(shlex.quote(x) for x in ["/usr/bin/python3", "tools/bench/compare.py"] + sys.argv[1:]),
                     "seconds": round(time.time() - started), "work": work},
        "errors": errors,
        "results": results,
    }


# ---- rendering -----------------------------------------------------------------------------------------------------

def num(v):
    """Milliseconds as the table prints them: one decimal, two under 1 ms.

    >>> num(21.94), num(0.734), num(1234.5)
    ('21.9', '0.73', '1234.5')
    """
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"


def cell(values):
    """The median of the rounds that have a value, then every round in brackets ("failed" for one without); "—" when
    no round has one.

    >>> cell([21.9, 26.3, 20.9]), cell([0.7]), cell([3147.3, None]), cell([None]), cell([])
    ('21.9 (21.9, 26.3, 20.9)', '0.70 (0.70)', '3147.3 (3147.3, failed)', '—', '—')
    """
    got = [v for v in values if v is not None]
    if not got:
        return "—"
    return num(statistics.median(got)) + " (" + ", ".join("failed" if v is None else num(v) for v in values) + ")"


def plural(n, word):
    """
    >>> plural(1, "round"), plural(3, "run")
    ('1 round', '3 runs')
    """
    return f"{n} {word}" + ("" if n == 1 else "s")


def med(values):
    """The median of the rounds that have a value (None when none has)."""
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def ratio(a, b, fmt="{:.2f}"):
    return fmt.format(a / b) if a is not None and b else "—"


def values(rounds, key, batch=None):
    """One value per round (None for a failed round or a missing key)."""
    out = []
    for x in rounds:
        v = x.get(key)
        out.append(v.get(str(batch)) if isinstance(v, dict) and batch is not None else v)
    return out


def render(data):
    cpu, s, results, errors = data["cpu"], data["settings"], data["results"], dict(data.get("errors", {}))
    batches, runs, models = s["batches"], s["runs"], s["models"]
    # Looked up again rather than read from the run: a saved run rendered later gets names added to the table since.
    name = microarchitecture(cpu["vendor"], cpu["family"], cpu["model"]) or cpu.get("microarchitecture")
    arch = f", {name}" if name else ""
    avx512 = " (the CPU has AVX-512; the runtime leaves Vector512 unaccelerated)" \
        if cpu["isa"] != "AVX-512" and cpu.get("avx512_present") else ""
    ort_runs = sorted({x["runs"] for m in models for b in batches for x in results.get(m, {}).get("ort", {}).get(str(b), [])
                       if "runs" in x})
    torch_engine = next((x["engine"] for m in models for x in results.get(m, {}).get("torch", []) if "engine" in x), "PyTorch ?")
    ort_engine = next((x["engine"] for m in models for b in batches for x in results.get(m, {}).get("ort", {}).get(str(b), [])
                       if "engine" in x), "onnxruntime ?")
    lines = [
        f"#### {cpu['model_name']}: {cpu['vendor']} family {cpu['family']} model {cpu['model']}{arch}, "
        f"{cpu['cpus']} CPUs ({cpu.get('cores', '?')} cores), engine ISA {cpu['isa']}{avx512}",
        "",
        f"{s['date']} UTC, commit {s['commit']}; L2 {cpu['l2']}, L3 {cpu['l3']}; {s['threads']} threads; "
        f"{plural(s['rounds'], 'round')} of " + ", ".join(f"{plural(n, 'run')} at batch {b}" for b, n in zip(batches, runs))
        + (f" (ONNX Runtime: {' and '.join(map(str, ort_runs))} runs, since tools/ort-bench takes at least 5)"
           if ort_runs and ort_runs != sorted(set(runs)) else "")
        + f"; load average {s['load_average']} at the start; the run took {s['seconds'] / 60:.0f} min. "
        f"{s['runtime']}, {torch_engine}, {ort_engine}. Each cell is the median of the rounds, every round in "
        "brackets; a round's value is the median of its runs after warm-up.",
        "",
        f"`{s['command']}`",
        "",
    ]
    head = "| fused forward, ms |" + "".join(f" batch {b}: ours | ONNX Runtime | PyTorch | ours ÷ ORT, ÷ PyTorch |" for b in batches)
    lines += [head, "|---|" + "---|---|---|---|" * len(batches)]
    for m in models:
        r = results.get(m)
        if r is None or m in errors:
            continue
        row = f"| {m} |"
        for b in batches:
            o, t, x = values(r["ours"][str(b)], "forward_fused_ms"), values(r["ort"][str(b)], "forward_ms"), \
                values(r["torch"], "forward_fused_ms", b)
            row += f" {cell(o)} | {cell(t)} | {cell(x)} | {ratio(med(o), med(t))}, {ratio(med(o), med(x))} |"
        lines.append(row)
    lines += ["", "| | groups | fuse: ours | fuse: PyTorch | PyTorch ÷ ours | fuse + first forward: ours | PyTorch "
              "| ours ÷ PyTorch |" + "".join(f" peak working set, batch {b} |" for b in batches),
              "|---|---|---|---|---|---|---|---|" + "---|" * len(batches)]
    for m in models:
        r = results.get(m)
        if r is None or m in errors:
            continue
        ours = r["ours"][str(batches[0])]
        g_ours, g_torch = med(values(ours, "groups")), med(values(r["torch"], "groups"))
        groups = "—" if g_ours is None else f"{g_ours:.0f}" if g_torch in (None, g_ours) else f"{g_ours:.0f} (PyTorch {g_torch:.0f})"
        if g_ours == 0:
            fuse = "| nothing to fuse | — | — | — | — | — |"
        else:
            fo, ft = values(ours, "fuse_ms"), values(r["torch"], "fuse_ms")
            so, st = values(ours, "fuse_then_forward_ms"), values(r["torch"], "fuse_then_forward_ms")
            fuse = (f"| {cell(fo)} | {cell(ft)} | {ratio(med(ft), med(fo), '{:.0f}x')} | {cell(so)} | {cell(st)} "
                    f"| {ratio(med(so), med(st))} |")
        mem = ""
        for b in batches:
            x = r["memory"].get(str(b), {})
            mem += (f" {x['peak_rss_fused_bytes'] / MIB:.0f} MiB = {x['peak_ratio_fused']:.2f} x "
                    f"({(x['weights_fused_bytes'] + x['activation_bytes']) / MIB:.0f} MiB) |") if "peak_rss_fused_bytes" in x else " — |"
        lines.append(f"| {m} | {groups} {fuse}{mem}")
    lines += ["", "Peak working set: the whole process during two fused forward passes in a fresh session (`fusion bench "
              "--memory`), as a multiple of the fused weights plus every layer output of one unfused pass (in brackets)."]
    for m in models:
        r = results.get(m, {})
        failed = [x["error"] for k in ("ours", "ort") for b in batches for x in r.get(k, {}).get(str(b), []) if "error" in x]
        failed += [x["error"] for x in r.get("torch", []) if "error" in x]
        failed += [x["error"] for x in r.get("memory", {}).values() if "error" in x]
        if failed:
            errors.setdefault(m, failed[0] + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))
    if errors:
        lines += ["", "Failed: " + "; ".join(f"{m}: {e}" for m, e in errors.items()) + "."]
    return "\n".join(lines)


def section_key(data):
    """The key of the run's section: vendor, family, model and the engine's ISA (a run capped with
    DOTNET_EnableAVX512=0 on the same CPU gets a section of its own instead of replacing the AVX-512 one)."""
    return f"{data['cpu']['key']}, {data['cpu']['isa']}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--batches", default="1,8", help="comma-separated images per forward pass (default 1,8)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", help="timed runs: one count, or one per batch (default 7 at the first batch, 3 at the others)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="folder for the exports, reused when they are there (default: a new temporary one)")
    ap.add_argument("--json", help="also write the run's raw results here (--from-json renders them again)")
    ap.add_argument("--from-json", help="render a saved run instead of measuring")
    ap.add_argument("--update", metavar="README", help="replace this CPU's section in README (others are left alone)")
    a = ap.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            data = json.load(f)
    else:
        batches = [int(b) for b in a.batches.split(",")]
        if any(not 1 <= b <= 64 for b in batches):
            ap.error(f"--batches takes integers from 1 to 64 (fusion bench's bound), got {a.batches}")
        try:
            runs = runs_per_batch(a.runs, batches)
        except ValueError as e:
            ap.error(str(e))
        for path, build in ((FUSION, "src/Fusion.Cli"), (ORT, "tools/ort-bench")):
            if not os.path.exists(path):
                sys.exit(f"{path} is missing: run `dotnet build {build} -c Release` first")
        data = measure(a, batches, runs, a.models.split(","), time.time())
        if a.json:
            with open(a.json, "w") as f:
                json.dump(data, f, indent=1)
    section = render(data)
    print(markers(section_key(data))[0] + "\n" + section + "\n" + markers(section_key(data))[1])
    if a.update:
        with open(a.update) as f:
            text = f.read()
        try:
            text = update_readme(text, section_key(data), section)
        except ValueError as e:
            sys.exit(f"compare.py: {a.update} left as it was: {e}")
        with open(a.update, "w") as f:
            f.write(text)
        print(f"updated the section of {section_key(data)} in {a.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
