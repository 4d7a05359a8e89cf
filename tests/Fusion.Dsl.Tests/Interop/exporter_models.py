"""Models and inputs the exporter must refuse (ExporterHostileTests.fs): hooks and other code that changes a module's
output outside its forward, trees too deep or not trees, damaged --weights/--pickled files, and faults while writing.

Factories (python3 -m fusion_torch export exporter_models:NAME) build the same small network from torch.manual_seed
and attach one thing to it. The commands:
    exporter_models.py diff CASE                   JSON {"max_abs_diff": d}: PyTorch's output with CASE's attachment
                                                   against the plain network's, on one input
    exporter_models.py save-pickled CASE FILE      torch.save(the CASE model, FILE)
    exporter_models.py write-inputs DIR            the damaged --weights/--pickled files, one per name in INPUTS
    exporter_models.py fault WHERE OUT             fusion_torch.export of the plain network to OUT (X.json) with the
                                                   write of the JSON half failing at WHERE (write, rename, none);
                                                   JSON {"error": message or null}
"""
import io
import json
import os
import struct
import sys
import zipfile
from collections import OrderedDict
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.modules.module as torch_module
from torch.nn.utils import parametrize, prune


def plain():
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        stem=nn.Conv2d(3, 4, 3, padding=1), bn=nn.BatchNorm2d(4), relu=nn.ReLU(),
        features=nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())))


def double_output(module, inputs, output):
    return output * 2


def negate_input(module, inputs):
    return tuple(-x for x in inputs)


def keep_gradient(module, grad_input, grad_output):
    return None


class Doubled(nn.Module):
    """A parametrization: the weight the layer uses is twice the stored one."""

    def forward(self, w):
        return w * 2


class CalledTwice(nn.ReLU):
    """A layer whose __call__ adds to its forward's result."""

    def __call__(self, x):
        return super().__call__(x) + 1


def _halve_weights(module, state, prefix, local_metadata):
    for k in state:
        state[k] = state[k] / 2
    return state


# Each attachment changes what the network computes (or exports) outside a forward; returns what undoes it.
def _attach_forward_hook(m):
    return m.features[0].register_forward_hook(double_output).remove


def _attach_forward_pre_hook(m):
    return m.features[0].register_forward_pre_hook(negate_input).remove


def _attach_global_forward_hook(m):
    return torch_module.register_module_forward_hook(double_output).remove


def _attach_global_forward_pre_hook(m):
    return torch_module.register_module_forward_pre_hook(negate_input).remove


def _attach_parametrization(m):
    parametrize.register_parametrization(m.features[0], "weight", Doubled())
    return lambda: parametrize.remove_parametrizations(m.features[0], "weight", leave_parametrized=False)


def _attach_pruning(m):
    prune.l1_unstructured(m.features[0], "weight", amount=0.5)
    return lambda: None  # diff builds a fresh network for the reference


def _attach_weight_norm(m):
    torch.nn.utils.weight_norm(m.features[0])
    with torch.no_grad():
        m.features[0].weight_g.mul_(3)  # as after training: the norm no longer matches the stored weight's
    return lambda: None


def _attach_call_override(m):
    m.features[1] = CalledTwice()
    return lambda: None


def _attach_instance_forward(m):
    relu = m.features[1]
    relu.forward = lambda x: F.relu(x) * 3
    return lambda: None


def _attach_state_dict_hook(m):
    return m.features[0]._register_state_dict_hook(_halve_weights).remove


def _attach_backward_hook(m):
    return m.features[0].register_full_backward_hook(keep_gradient).remove


ATTACH = {name[len("_attach_"):]: f for name, f in globals().items() if name.startswith("_attach_")}


def _build(case):
    m = plain()
    ATTACH[case](m)
    return m.eval()


def _factory(case):
    def build():
        return _build(case)
    build.__name__ = case
    return build


globals().update({case: _factory(case) for case in ATTACH})


def nested(depth):
    """`depth` Sequentials inside each other around one ReLU."""
    m = nn.ReLU()
    for _ in range(depth):
        m = nn.Sequential(m)
    return m


class _ConstantIndex(nn.Module):
    """Indexes a table with a tensor computed from a plain tensor attribute at trace time, as maxvit does: torch.fx
    records the result as a _tensor_constant outside the state_dict, which the exporter writes into the graph."""

    def __init__(self, n):
        super().__init__()
        self.table = nn.Parameter(torch.randn(4, 2))
        self.index = torch.arange(n) % 4  # a plain attribute: not a parameter or buffer

    def forward(self, x):
        return x + self.table[self.index.view(-1)].mean()


def constant_index(n):
    """A model whose graph holds a tensor constant of `n` elements."""
    return _ConstantIndex(n).eval()


def cycle():
    """A Sequential that holds itself as its child 'again'."""
    m = nn.Sequential(nn.ReLU())
    m.add_module("again", m)
    return m


def diff(case):
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = plain().eval()(x)
        m = plain().eval()
        undo = ATTACH[case](m)
        try:
            attached = m(x)
        finally:
            undo()
    return {"max_abs_diff": (attached - reference).abs().max().item()}


def _pickle_of(obj):
    b = io.BytesIO()
    torch.save(obj, b)
    return b.getvalue()


def _safetensors(header):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h)) + h


# Damaged inputs by name: the bytes of each file, as the readers meet them.
def _inputs():
    good = _pickle_of(plain().state_dict())
    return {
        "opcode.pt": b"\x80\x02\xff",                               # UnpicklingError: an opcode pickle lacks
        "truncated-pickle.pt": b"\x80\x02X",                        # the legacy reader's struct.error
        "empty.pt": b"",                                            # EOFError
        "truncated-zip.pt": good[: len(good) // 2],                 # RuntimeError from torch's zip reader
        "list.pt": _pickle_of([torch.zeros(1)]),                    # loads, but not a state_dict
        "wrong-keys.pt": _pickle_of({"x": torch.zeros(1)}),         # a state_dict of another model
        "shape-not-list.safetensors": _safetensors({"w": {"dtype": "F32", "shape": 3, "data_offsets": [0, 0]}}),
        "deep-header.safetensors": _safetensors(b"[" * 100000 + b"]" * 100000),   # RecursionError in json
    }


def write_inputs(folder):
    os.makedirs(folder, exist_ok=True)
    for name, data in _inputs().items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    # torch.save's zip with one byte of its pickle flipped (torch's zip reader does not check CRCs): UnpicklingError.
    raw = bytearray(_pickle_of(plain().state_dict()))
    info = next(i for i in zipfile.ZipFile(io.BytesIO(bytes(raw))).infolist() if i.filename.endswith("data.pkl"))
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + 2] ^= 0xFF
    with open(os.path.join(folder, "flipped-byte.pt"), "wb") as f:
        f.write(raw)


def save_pickled(case, path):
    model = nested(2000) if case == "nested" else _build(case)
    # The pickler recurses once per module level; the exporter must meet this file, so make it.
    sys.setrecursionlimit(20000)
    torch.save(model, path)


def fault(where, out):
    """Exports the plain network to `out` with the JSON half's temporary write or its rename failing."""
    import fusion_torch
    from fusion_torch import files

    real_replace, real_fdopen = os.replace, os.fdopen

    def replace(src, dst):
        if where == "rename" and dst.endswith(".json"):
            raise OSError(5, "injected: rename failed")
        return real_replace(src, dst)

    class Full(io.RawIOBase):
        def write(self, b):
            raise OSError(28, "injected: No space left on device")

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        if where == "write" and ".json." in os.readlink(f"/proc/self/fd/{fd}"):
            f.close()
            return Full()
        return f

    with mock.patch.object(files.os, "replace", replace), mock.patch.object(files.os, "fdopen", fdopen):
        try:
            fusion_torch.export(plain().eval(), out)
            return {"error": None}
        except fusion_torch.ExportError as e:
            return {"error": str(e)}


if __name__ == "__main__":
    # Through the module's own name: what save-pickled pickles must be found as exporter_models.*, not __main__.*.
    from exporter_models import diff, fault, save_pickled, write_inputs
    cmd, *rest = sys.argv[1:]
    if cmd == "diff":
        print(json.dumps(diff(*rest)))
    elif cmd == "save-pickled":
        save_pickled(*rest)
    elif cmd == "write-inputs":
        write_inputs(*rest)
    elif cmd == "fault":
        print(json.dumps(fault(*rest)))
    else:
        sys.exit(f"unknown command {cmd}")
