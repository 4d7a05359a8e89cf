"""Writes PyTorch's observer results for a seeded set of calibration cases to one JSON file (the oracle of
Quantization/ObserverTests.fs).

Usage: /usr/bin/python3 observer_fixtures.py OUT.json

Every case names an observer class and its constructor arguments, the calibration batches it sees (shape and
float32 elements) and what PyTorch's observer holds afterwards: min_val/max_val (and the histogram for
HistogramObserver) and calculate_qparams()'s scales and zero points. Floats are written as the float64 value of the
float32 (Python's repr round-trips it), so a reader that parses a double and narrows it gets the exact float32 bits.
"""
import json
import sys
import warnings

import numpy as np
import torch
from torch.ao.quantization import observer as O

warnings.filterwarnings("ignore")
torch.manual_seed(0)
rng = np.random.default_rng(20240524)

DTYPES = {"quint8": torch.quint8, "qint8": torch.qint8}
SCHEMES = {
    "per_tensor_affine": torch.per_tensor_affine,
    "per_tensor_symmetric": torch.per_tensor_symmetric,
    "per_channel_affine": torch.per_channel_affine,
    "per_channel_symmetric": torch.per_channel_symmetric,
}


def f32(shape, values):
    return np.asarray(values, dtype=np.float32).reshape(shape)


def normal(shape, scale=1.0, loc=0.0):
    return f32(shape, rng.normal(loc, scale, size=shape))


def uniform(shape, lo, hi):
    return f32(shape, rng.uniform(lo, hi, size=shape))


# Calibration batch sets for per-tensor observers: each a list of batches (numpy float32 arrays).
def tensor_batch_sets():
    sets = {
        "normal_three_shapes": [normal((4, 8)), normal((16,), 2.0), normal((2, 3, 5), 0.5)],
        "relu_like_positive": [np.maximum(normal((6, 7), 3.0), 0), np.maximum(normal((50,), 1.0), 0)],
        "all_zero": [np.zeros((3, 4), np.float32)],
        "constant": [np.full((5,), 2.5, np.float32), np.full((2, 2), 2.5, np.float32)],
        "negative_only": [uniform((8, 8), -3.0, -0.25), uniform((10,), -7.5, -1.0)],
        "huge_range": [normal((32,), 3.0e6), f32((4,), [1e-3, -2e-3, 5.0e7, -1.0e7])],
        "tiny_values": [normal((20,), 1e-6)],
        "growing_range": [uniform((64,), -0.4, 0.7), uniform((64,), -2.0, 3.0), uniform((128,), -9.0, 12.5)],
        "shrinking_range": [uniform((64,), -20.0, 31.0), uniform((64,), -1.0, 2.0), normal((100,), 0.3)],
        "zero_then_data": [np.zeros((4,), np.float32), normal((40,), 1.5)],
        "many_batches": [normal((30,), 1.0 + 0.5 * i, 0.2 * i) for i in range(6)],
    }
    return sets


# Batch sets for per-channel observers: (ch_axis, batches).
def channel_batch_sets():
    w = normal((4, 10))
    w[2, :] = 0.0          # an all-zero channel
    w[3, :] = -1.25        # a constant negative channel
    act = normal((2, 3, 4, 4), 2.0)
    act[:, 1] = np.abs(act[:, 1])  # a positive-only channel
    return {
        "weight_axis0": (0, [w]),
        "weight_axis0_two_batches": (0, [normal((5, 3, 3)), normal((5, 3, 3), 4.0)]),
        "activation_axis1": (1, [act, normal((1, 3, 2, 2), 0.7)]),
        "activation_axis1_negative": (1, [uniform((2, 3, 6), -4.0, -0.5), uniform((3, 3, 2), -1.0, 0.0)]),
        "huge_axis1": (1, [normal((3, 2, 8), 1.0e6)]),
        "constant_axis0": (0, [np.full((3, 4), 0.75, np.float32)]),
    }


def ranges(dtype):
    # (quant_min, quant_max) customizations besides the dtype's default (None, None).
    if dtype == "quint8":
        return [(None, None), (0, 15), (0, 127)]
    return [(None, None), (-8, 7), (-127, 127)]


def floats(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def config_grid(schemes, refuses_symmetric_quint8_reduce):
    for dtype in DTYPES:
        for scheme in schemes:
            for reduce_range in (False, True):
                if refuses_symmetric_quint8_reduce and "symmetric" in scheme and reduce_range and dtype == "quint8":
                    continue
                for qmin, qmax in ranges(dtype):
                    yield dtype, scheme, reduce_range, qmin, qmax


def run(cls, kwargs, batches):
    obs = cls(**kwargs)
    for b in batches:
        obs(torch.from_numpy(b.copy()))
    scale, zp = obs.calculate_qparams()
    return obs, scale, zp


def case(name, kind, args, batches, obs, scale, zp):
    c = {
        "name": name,
        "observer": kind,
        "args": args,
        "batches": [{"shape": list(b.shape), "data": [float(v) for v in b.reshape(-1)]} for b in batches],
        "scale": floats(scale.to(torch.float32)),
        "zero_point": [int(v) for v in zp.reshape(-1).tolist()],
    }
    if hasattr(obs, "min_val"):
        c["min_val"] = floats(obs.min_val)
        c["max_val"] = floats(obs.max_val)
    if isinstance(obs, O.HistogramObserver):
        c["histogram"] = floats(obs.histogram)
    return c


def main(out):
    cases = []
    per_tensor = ["per_tensor_affine", "per_tensor_symmetric"]
    per_channel = ["per_channel_affine", "per_channel_symmetric"]
    tsets = tensor_batch_sets()
    csets = channel_batch_sets()

    def args_of(dtype, scheme, rr, qmin, qmax):
        return {"dtype": dtype, "qscheme": scheme, "reduce_range": rr, "quant_min": qmin, "quant_max": qmax}

    def kw(a):
        return {"dtype": DTYPES[a["dtype"]], "qscheme": SCHEMES[a["qscheme"]], "reduce_range": a["reduce_range"],
                "quant_min": a["quant_min"], "quant_max": a["quant_max"]}

    for kind, cls, extra in [("MinMaxObserver", O.MinMaxObserver, {}),
                             ("MovingAverageMinMaxObserver", O.MovingAverageMinMaxObserver, {"averaging_constant": 0.01}),
                             ("MovingAverageMinMaxObserver", O.MovingAverageMinMaxObserver, {"averaging_constant": 0.3})]:
        for cfg in config_grid(per_tensor, True):
            a = dict(args_of(*cfg), **extra)
            for set_name, batches in tsets.items():
                obs, s, z = run(cls, dict(kw(a), **extra), batches)
                cases.append(case(f"{kind}/{set_name}", kind, a, batches, obs, s, z))

    for kind, cls, extra in [("PerChannelMinMaxObserver", O.PerChannelMinMaxObserver, {}),
                             ("MovingAveragePerChannelMinMaxObserver", O.MovingAveragePerChannelMinMaxObserver,
                              {"averaging_constant": 0.01})]:
        for cfg in config_grid(per_channel, True):
            for set_name, (axis, batches) in csets.items():
                a = dict(args_of(*cfg), ch_axis=axis, **extra)
                obs, s, z = run(cls, dict(kw(a), ch_axis=axis, **extra), batches)
                cases.append(case(f"{kind}/{set_name}", kind, a, batches, obs, s, z))

    # HistogramObserver allows a symmetric quint8 scheme with reduce_range (MinMaxObserver refuses it).
    for cfg in config_grid(per_tensor, False):
        a = args_of(*cfg)
        for set_name, batches in tsets.items():
            obs, s, z = run(O.HistogramObserver, kw(a), batches)
            cases.append(case(f"HistogramObserver/{set_name}", "HistogramObserver", a, batches, obs, s, z))

    for scale, zp, dtype, scheme, qmin, qmax in [(1.0 / 256.0, 0, "quint8", "per_tensor_affine", 0, 255),
                                                  (2.0 / 256.0, 128, "quint8", "per_tensor_symmetric", 0, 255),
                                                  (0.1, -3, "qint8", "per_tensor_affine", -128, 127)]:
        obs = O.FixedQParamsObserver(scale, zp, DTYPES[dtype], SCHEMES[scheme], qmin, qmax)
        batches = [normal((3, 3))]
        for b in batches:
            obs(torch.from_numpy(b))
        s, z = obs.calculate_qparams()
        a = {"scale": scale, "zero_point": zp, "dtype": dtype, "qscheme": scheme, "quant_min": qmin, "quant_max": qmax}
        cases.append(case("FixedQParamsObserver", "FixedQParamsObserver", a, batches, obs, s, z))

    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1])
