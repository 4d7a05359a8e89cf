"""Checkpoints for TorchCheckpointTests.fs, written and checked by PyTorch itself (run with /usr/bin/python3).

  make DIR        whole_module.pth (torch.save of a module, not its state_dict) and torch.save files CASE.pth, each with CASE.ref.safetensors: the same tensors as torch holds them,
                  contiguous, floating types as float32 (t.float()) and integer/bool types as int64 (t.long()),
                  written by the small safetensors writer below (the reference never passes through the reader under test)
  legacy DIR      legacy.pth and legacy_protocol4.pth in torch's pre-1.6 format (_use_new_zipfile_serialization=False)
  check PTH REF   torch.load(PTH, weights_only=True) must be an OrderedDict with exactly REF's keys, in order, dtypes and values
  fused_resnet18 PT  torchvision's quantizable resnet18 after its fuse_model() must take PT with load_state_dict(strict=True)
  evil DIR SENTINEL   zips shaped like checkpoints whose data.pkl would run `touch SENTINEL` (os.system, builtins.eval);
                      made with the plain pickle module, no torch needed
  craft DIR       checkpoints with impossible sizes, made without torch through stand-in torch modules
"""
import collections
import json
import os
import pickle
import struct
import sys
import types
import zipfile

ST_DTYPES = {"F32": ("<f4", 4), "I64": ("<i8", 8)}


def write_safetensors(path, items):
    """items: list of (key, 'F32'|'I64', shape, bytes)."""
    header, offset = {}, 0
    for key, dtype, shape, data in items:
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in items:
            f.write(data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return [(k, v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in entries]


def reference(state):
    import torch
    items = []
    for k, t in state.items():
        t = t.detach()
        if t.is_floating_point():
            items.append((k, "F32", tuple(t.shape), t.float().contiguous().numpy().tobytes()))
        else:
            items.append((k, "I64", tuple(t.shape), t.long().contiguous().numpy().tobytes()))
    return items


def make(out):
    import torch
    torch.manual_seed(1234)
    cases = {}
    cases["float32"] = collections.OrderedDict(
        [("w", torch.randn(4, 3, 3, 3)), ("b", torch.randn(4)), ("scalar", torch.tensor(2.5)), ("empty", torch.zeros(0, 3))])
    cases["float16"] = collections.OrderedDict([("w", torch.randn(5, 7).half()), ("tiny", torch.tensor([6e-8, 65504.0, -0.0]).half())])
    cases["bfloat16"] = collections.OrderedDict([("w", torch.randn(6, 5).bfloat16())])
    cases["float64"] = collections.OrderedDict([("w", torch.randn(3, 4, dtype=torch.float64))])
    cases["int64"] = collections.OrderedDict(
        [("num_batches_tracked", torch.tensor(17)), ("idx", torch.tensor([-(2 ** 62), 0, 2 ** 62 + 5])),
         ("i32", torch.tensor([-5, 7], dtype=torch.int32)), ("u8", torch.tensor([0, 255], dtype=torch.uint8)),
         ("flags", torch.tensor([True, False]))])
    base = torch.arange(60, dtype=torch.float32) * 0.5 - 3
    cases["views"] = collections.OrderedDict(
        [("strided", base.view(5, 12)[1:4, 2::3]),            # offset 14, strides (12, 3)
         ("slice", base[10:20]),                               # contiguous with an offset
         ("permuted", base.view(3, 4, 5).permute(2, 0, 1)),   # strides (1, 20, 5)
         ("whole", base),
         ("expanded", base[5:6].view(1, 1).expand(3, 4)),      # zero strides
         ("transposed", torch.randn(3, 5).t())])
    cases["parameter"] = collections.OrderedDict([("p", torch.nn.Parameter(torch.randn(3, 2))), ("q", torch.randn(2))])
    sd = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3)).state_dict()
    cases["wrapped"] = sd
    import torchvision
    torch.manual_seed(7)
    net = torchvision.models.resnet18()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked.fill_(3)
    cases["resnet18"] = net.state_dict()
    for name, state in cases.items():
        obj = {"epoch": 3, "state_dict": state, "optimizer": {"lr": 0.1, "momentum": [0.9]}} if name == "wrapped" else state
        torch.save(obj, os.path.join(out, name + ".pth"))
        write_safetensors(os.path.join(out, name + ".ref.safetensors"), reference(state))
    torch.save(torch.nn.Linear(2, 2), os.path.join(out, "whole_module.pth"))   # the module itself, not its state_dict


def legacy(out):
    import torch
    state = collections.OrderedDict([("w", torch.randn(3))])
    torch.save(state, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(state, os.path.join(out, "legacy_protocol4.pth"), _use_new_zipfile_serialization=False, pickle_protocol=4)


def check(pth, ref):
    import torch
    loaded = torch.load(pth, weights_only=True)
    if not isinstance(loaded, collections.OrderedDict):
        raise SystemExit(f"torch.load gave a {type(loaded).__name__}, not an OrderedDict")
    expected = read_safetensors(ref)
    if list(loaded.keys()) != [k for k, _, _, _ in expected]:
        raise SystemExit(f"keys differ: {list(loaded.keys())[:10]} vs {[k for k, _, _, _ in expected][:10]}")
    for key, dtype, shape, data in expected:
        t = loaded[key]
        want = torch.float32 if dtype == "F32" else torch.int64
        if t.dtype != want or list(t.shape) != list(shape):
            raise SystemExit(f"{key}: torch holds {t.dtype} {list(t.shape)}, expected {want} {shape}")
        if t.contiguous().numpy().tobytes() != data:
            raise SystemExit(f"{key}: values differ")
    print(f"ok {len(expected)} tensors")


def fused_resnet18(pt):
    import torch
    import torchvision
    model = torchvision.models.quantization.resnet18(quantize=False)
    model.eval()
    model.fuse_model()
    print(model.load_state_dict(torch.load(pt, weights_only=True), strict=True))


class _Run:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


class _Call:
    def __init__(self, fn):
        self.fn = fn

    def __reduce__(self):
        return (self.fn, ())


def _zip_pickle(path, pickled):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/version", "3\n")


def evil(out, sentinel):
    cmd = f"touch {sentinel}"
    state = collections.OrderedDict([("w", _Run(os.system, cmd))])
    _zip_pickle(os.path.join(out, "evil_system.pth"), pickle.dumps(state, protocol=2))
    _zip_pickle(os.path.join(out, "evil_eval.pth"), pickle.dumps(_Run(eval, f"__import__('os').system({cmd!r})"), protocol=2))
    _zip_pickle(os.path.join(out, "evil_proto4.pth"), pickle.dumps({"state_dict": _Run(os.system, cmd)}, protocol=4))
    # A call without arguments, which an unpickler that turns unknown globals into empty objects would accept.
    _zip_pickle(os.path.join(out, "evil_getpid.pth"), pickle.dumps({"w": _Call(os.getpid)}, protocol=2))


def craft(out):
    """Stand-ins for torch, torch._utils and torch.FloatStorage let the plain pickler write torch.save's layout with any
    sizes, strides and storage lengths, without torch."""
    torch_mod = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    FloatStorage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
    torch_mod.FloatStorage = FloatStorage
    torch_mod._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch_mod, utils

    class Storage:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class View:
        def __init__(self, storage, offset, size, stride):
            self.args = (storage, offset, size, stride, False, collections.OrderedDict())

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    def write(name, views, storages):
        import io
        buf = io.BytesIO()
        p = pickle.Pickler(buf, protocol=2)
        p.persistent_id = lambda o: ("storage", FloatStorage, o.key, "cpu", o.numel) if isinstance(o, Storage) else None
        p.dump(collections.OrderedDict(views))
        with zipfile.ZipFile(os.path.join(out, name + ".pth"), "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            for key, nbytes in storages.items():
                z.writestr(f"archive/data/{key}", b"\0" * nbytes)
            z.writestr("archive/version", "3\n")

    s4 = Storage("0", 4)
    write("view_past_storage", [("w", View(s4, 0, (3, 2), (2, 1)))], {"0": 16})
    write("offset_past_storage", [("w", View(s4, 3, (2,), (1,)))], {"0": 16})
    write("entry_shorter", [("w", View(Storage("0", 6), 0, (6,), (1,)))], {"0": 8})
    write("absurd_size", [("w", View(s4, 0, (2 ** 31 - 1, 2 ** 31 - 1), (0, 0)))], {"0": 16})
    write("absurd_dimension", [("w", View(s4, 0, (2 ** 40, 2 ** 40), (1, 1)))], {"0": 16})
    write("absurd_numel", [("w", View(Storage("0", 2 ** 62), 0, (1,), (1,)))], {"0": 16})
    write("absurd_stride", [("w", View(s4, 0, (3,), (2 ** 62,)))], {"0": 16})
    write("zero_stride_blowup", [("w", View(s4, 0, (2 ** 30,), (0,)))], {"0": 16})
    write("alias_blowup", [(f"w{i}", View(Storage("0", 2 ** 16), 0, (2 ** 16,), (1,))) for i in range(40)], {"0": 2 ** 18})
    write("negative_stride", [("w", View(s4, 3, (2,), (-1,)))], {"0": 16})
    write("missing_storage", [("w", View(s4, 0, (4,), (1,)))], {})
    write("not_a_tensor", [("w", View(s4, 0, (4,), (1,))), ("epoch", 3)], {"0": 16})


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make": make, "legacy": legacy, "check": check, "fused_resnet18": fused_resnet18, "evil": evil, "craft": craft}[cmd](*args)
