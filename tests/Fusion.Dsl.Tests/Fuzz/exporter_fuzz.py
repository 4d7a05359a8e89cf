"""Seeded fuzzing of `python3 -m fusion_torch export` (run by Fuzz/ExporterFuzzTests.fs).

python3 exporter_fuzz.py SEED CASES WORKDIR

Each case writes a module file holding a random small nn.Module tree (nested Sequential, ModuleList, ModuleDict and
user classes, residual adds, sometimes a forward hook or pre-hook, rarely a Sequential nested 2,000 deep), sometimes a
--weights file (torch.save or safetensors, intact or damaged), and picks a random --out: a fresh file or folder, an
existing pair, the weights file itself or its alias (same path, symlink, hard link, through a symlinked folder), a
device, a FIFO, a directory, an empty path, a missing folder. The exporter's CLI runs in this process (main(argv), the
code `python3 -m fusion_torch` runs) and, every SUBPROCESS_EVERY-th case, as a real `python3 -m fusion_torch export`.
A case fails on: a traceback, an exit code other than 0/1/2, a refusal (exit 1) that is not one `fusion_torch: ...`
line, a file created or changed by a refused run, a run that wrote anything but its pair, or a changed input.
Prints one JSON line: {"cases": N, "codes": {...}, "subprocess": K, "failures": [...]}."""
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import traceback
import warnings

SUBPROCESS_EVERY = 25
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))

import torch  # noqa: E402
from fusion_torch.__main__ import main  # noqa: E402
from fusion_torch.safetensors import save_file  # noqa: E402


class Source:
    """The text of one module file: class definitions and the body of build()."""

    def __init__(self, rng, tag):
        self.rng, self.tag, self.classes, self.count = rng, tag, [], 0

    def cls(self, init, forward):
        self.count += 1
        name = f"User{self.tag}_{self.count}"
        self.classes.append(f"class {name}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                            + "".join(f"        {line}\n" for line in init)
                            + "    def forward(self, x):\n" + "".join(f"        {line}\n" for line in forward))
        return f"{name}()"

    def leaf(self, c):
        """A layer from c channels: (expression, channels out)."""
        r = self.rng
        k = r.randrange(7)
        if k == 0:
            c2 = r.choice([c, 2, 4])
            return f"nn.Conv2d({c}, {c2}, 3, padding=1, bias={r.random() < 0.5})", c2
        if k == 1:
            return f"nn.BatchNorm2d({c})", c
        if k == 2:
            return r.choice(["nn.ReLU()", "nn.ReLU6()", "nn.Identity()", "nn.Dropout(0.1)", "nn.Hardtanh()"]), c
        if k == 3:
            return f"nn.Conv2d({c}, {c}, 1)", c
        return self.rng.choice([f"nn.Conv2d({c}, {c}, 3, padding=1)", "nn.ReLU(inplace=True)", f"nn.BatchNorm2d({c})"]), c

    def tree(self, c, depth):
        """A module from c channels: (expression, channels out)."""
        r = self.rng
        if depth <= 0 or r.random() < 0.3:
            return self.leaf(c)
        kind = r.randrange(5)
        parts, cur = [], c
        for _ in range(r.randint(1, 3)):
            e, cur = self.tree(cur, depth - 1)
            parts.append(e)
        if kind == 0:
            return f"nn.Sequential({', '.join(parts)})", cur
        if kind == 1:
            return self.cls([f"self.layers = nn.ModuleList([{', '.join(parts)}])"],
                            ["for m in self.layers:", "    x = m(x)", "return x"]), cur
        if kind == 2:
            items = ", ".join(f"'k{i}': {p}" for i, p in enumerate(parts))
            return self.cls([f"self.d = nn.ModuleDict({{{items}}})"],
                            ["for k in self.d:", "    x = self.d[k](x)", "return x"]), cur
        if kind == 3 and cur == c:
            return self.cls([f"self.body = nn.Sequential({', '.join(parts)})"], ["return x + self.body(x)"]), cur
        names = [f"m{i}" for i in range(len(parts))]
        return self.cls([f"self.{n} = {p}" for n, p in zip(names, parts)],
                        [f"x = self.{n}(x)" for n in names] + ["return x"]), cur

    def text(self, hook, deep):
        body, _ = self.tree(3, self.rng.randint(1, 4))
        lines = [f"m = {body}"]
        if deep:
            lines = ["m = nn.Linear(2, 2)", "for _ in range(2000):", "    m = nn.Sequential(m)"]
        if hook:
            which = self.rng.choice(["register_forward_hook(lambda mod, i, o: o * 2)",
                                     "register_forward_pre_hook(lambda mod, i: (i[0] + 1,))",
                                     "register_forward_hook(lambda mod, i, o: None)"])
            lines += ["subs = [s for _, s in m.named_modules()]", f"subs[{self.rng.randrange(1000)} % len(subs)].{which}"]
        lines.append("return m")
        return ("import torch\nfrom torch import nn\n\n" + "\n".join(self.classes)
                + "\ndef build():\n" + "".join(f"    {line}\n" for line in lines))


def snapshot(root):
    """Every path under root (links not followed) -> bytes for regular files, a kind for the rest."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            if os.path.islink(p):
                out[p] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[p] = f.read()
            else:
                out[p] = "dir" if os.path.isdir(p) else "other"
    return out


def run_inprocess(argv):
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException:  # anything else escaping main() is what `python3 -m fusion_torch` would print as a traceback
        return 99, err.getvalue() + traceback.format_exc()
    return code, err.getvalue()


def run_subprocess(argv, cases):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "python"), cases]), PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, "-m", "fusion_torch"] + argv, capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stderr


def judge(code, err, before, after, outputs):
    problems = []
    if code not in (0, 1, 2):
        problems.append(f"exit code {code}")
    if "Traceback" in err:
        problems.append("a traceback: " + err.strip().splitlines()[-1] if err.strip() else "a traceback")
    lines = err.strip().splitlines()
    if code == 1 and (len(lines) != 1 or not lines[0].startswith("fusion_torch: ")):
        problems.append(f"a refusal that is not one 'fusion_torch: ...' line: {err.strip()[:300]!r}")
    created = set(after) - set(before)
    for p in created:
        if os.path.basename(p).startswith(".") or "tmp" in os.path.basename(p):
            problems.append(f"a temporary was left: {p}")
    if code != 0:
        if created:
            problems.append(f"refused, yet created {sorted(created)}")
        changed = [p for p in before if after.get(p) != before[p]]
        if changed:
            problems.append(f"refused, yet changed {changed}")
    else:
        # The pair, and the folders the exporter creates for it (it makes a missing folder, as documented).
        allowed = set(outputs)
        for o in outputs:
            d = os.path.dirname(o)
            while d and d not in before and d != os.path.dirname(d):
                allowed.add(d)
                d = os.path.dirname(d)
        for p in created:
            if p not in allowed:
                problems.append(f"wrote {p} beside its pair {outputs}")
        for p in before:
            if after.get(p) != before[p] and p not in allowed:
                problems.append(f"changed {p}, which is not its output pair {outputs}")
    return problems


def main_fuzz(seed, count, work):
    rng = random.Random(seed)
    cases = os.path.join(work, "cases")
    root = os.path.join(work, "files")
    os.makedirs(cases, exist_ok=True)
    os.makedirs(root, exist_ok=True)
    sys.path.insert(0, cases)
    os.mkfifo(os.path.join(root, "fifo"))
    os.mkdir(os.path.join(root, "folder.json"))
    os.symlink(root, os.path.join(root, "alias"))
    codes, failures, sub = {}, [], 0
    for i in range(count):
        r = random.Random(rng.randrange(1 << 30))
        tag = f"{seed}_{i}"
        hook, deep = r.random() < 0.15, r.random() < 0.02
        src = Source(r, tag).text(hook, deep)
        module = f"fzcase_{tag}"
        with open(os.path.join(cases, module + ".py"), "w") as f:
            f.write(src)
        argv = ["export", f"{module}:build", "--input-shape", "1,3,8,8"]
        weights = None
        if r.random() < 0.4 and not deep:
            import importlib
            torch.manual_seed(0)
            try:
                state = importlib.import_module(module).build().state_dict()
            except Exception:
                state = {}
            kind = r.choice(["pt", "safetensors", "damaged", "junk"])
            weights = os.path.join(root, f"w{i}.{'safetensors' if kind == 'safetensors' else 'pt'}")
            if kind == "safetensors":
                save_file({k: v.contiguous() for k, v in state.items()}, weights)
            else:
                torch.save(state, weights)
                if kind in ("damaged", "junk"):
                    with open(weights, "rb") as f:
                        data = f.read()
                    data = data[: r.randrange(len(data))] if kind == "damaged" else bytes(r.randrange(256) for _ in range(64))
                    with open(weights, "wb") as f:
                        f.write(data)
            argv += ["--weights", weights]
        t = r.randrange(14)
        if t == 0:
            out = os.path.join(root, f"c{i}.json")
        elif t == 1:
            out = os.path.join(root, f"d{i}")
        elif t == 2:
            out = os.path.join(root, "prev.json")  # an existing pair after the first success
        elif t == 3 and weights:
            out = weights  # the weights file itself: a folder named like it, or its pair
        elif t == 4 and weights and weights.endswith(".safetensors"):
            out = weights[: -len(".safetensors")] + ".json"  # the pair's tensors would replace the weights
        elif t == 5 and weights:
            link = os.path.join(root, f"l{i}.safetensors")
            os.symlink(weights, link)
            out = link[: -len(".safetensors")] + ".json"
        elif t == 6 and weights:
            hard = os.path.join(root, f"h{i}.safetensors")
            os.link(weights, hard)
            out = hard[: -len(".safetensors")] + ".json"
        elif t == 7 and weights and weights.endswith(".safetensors"):
            out = os.path.join(root, "alias", os.path.basename(weights)[: -len(".safetensors")] + ".json")
        elif t == 8:
            out = r.choice(["/dev/null", os.path.join(root, "fifo"), os.path.join(root, "folder.json")])
        elif t == 9:
            out = ""
        elif t == 10:
            out = os.path.join(root, "missing", "deeper", f"m{i}.json")
        elif t == 11:
            out = os.path.join(root, f"p{i}.json")  # the pair's tensors half is a FIFO
            os.mkfifo(out[:-5] + ".safetensors")
        elif t == 12:
            out = os.path.join(cases, module + ".json")
        else:
            out = os.path.join(root, f"c{i}.json")
        argv += ["--out", out]
        if out.endswith(".json"):
            outputs = [out, out[:-5] + ".safetensors"]
        else:
            outputs = [os.path.join(out, "model.json"), os.path.join(out, "model.safetensors")]
        outputs = [os.path.join(os.path.realpath(os.path.dirname(o) or "."), os.path.basename(o)) if o else o for o in outputs]
        before = snapshot(root)
        before.update({k: v for k, v in snapshot(cases).items() if not k.endswith((".json", ".safetensors"))})
        use_sub = i % SUBPROCESS_EVERY == 0
        if use_sub:
            sub += 1
            code, err = run_subprocess(argv, cases)
        else:
            code, err = run_inprocess(argv)
        after = snapshot(root)
        after.update({k: v for k, v in snapshot(cases).items() if not k.endswith((".json", ".safetensors"))})
        codes[str(code)] = codes.get(str(code), 0) + 1
        problems = judge(code, err, before, after, outputs)
        if problems:
            what = f"hook={hook} deep={deep} weights={os.path.basename(weights) if weights else None} out={out!r}"
            failures.append(f"case {i} (seed {seed}, {'subprocess' if use_sub else 'in-process'}) [{what}]: " + "; ".join(problems))
    print(json.dumps({"cases": count, "codes": codes, "subprocess": sub, "failures": failures}))


if __name__ == "__main__":
    main_fuzz(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
