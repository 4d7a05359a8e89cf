"""Writes what PyTorch 1.13's quantized tensors and quantized modules compute, on the onednn engine, for a seeded set of
cases to one JSON file (the oracle of Quantization/QuantizedModuleTests.fs).

Usage: /usr/bin/python3 quantized_fixtures.py OUT.json

A quantized tensor is written as {"dtype", "shape", "values" (its int_repr, row-major)} plus either "scale" and
"zero_point" or "scales", "zero_points" and "axis". Floats are written as Python floats: a float32 as the float64 of
its value (so narrowing a parsed double gives its bits back), a scale as the float64 PyTorch keeps.

Case kinds:
  quantize      - a float32 tensor "x", qparams, PyTorch's quantize_per_tensor/quantize_per_channel result "expected"
                  and its dequantize() "dequantized"
  linear        - torch.ao.nn.quantized.Linear (args.relu: torch.nn.intrinsic.quantized.LinearReLU)
  conv1d, conv2d, conv3d - torch.ao.nn.quantized.Conv1d/2d/3d (args.relu: torch.nn.intrinsic.quantized.ConvReLU1d/2d/3d)
  add, add_relu, mul, cat - torch.ao.nn.quantized.QFunctional with output scale/zero point
  relu, max_pool2d, adaptive_avg_pool2d, flatten, mean, avg_pool2d, hardsigmoid, relu6, transpose, chunk - the quantized functional forms
  hardswish     - torch.ao.nn.quantized.Hardswish with output scale/zero point
  sigmoid       - torch.sigmoid on a quantized tensor (fixed output qparams)
  group_norm    - torch.ao.nn.quantized.GroupNorm and InstanceNorm1d/2d/3d (args: num_groups, C for an instance norm, eps,
                  weight and bias or None)
  layer_norm    - torch.ao.nn.quantized.LayerNorm (args: normalized_shape, eps, weight and bias or None)
  leaky_relu, elu - torch.ao.nn.quantized.LeakyReLU (args.negative_slope) and ELU (args.alpha) with output scale/zero point
  conv_transpose1d, conv_transpose2d, conv_transpose3d - torch.ao.nn.quantized.ConvTranspose1d/2d/3d (args: stride, padding,
                  dilation, groups; output_padding 0)
  upsample      - F.interpolate on a quantized tensor (args: size, scale_factor, mode, align_corners,
                  recompute_scale_factor, channels_last: PyTorch ran it on the input made channels-last), and
                  "float_expected": PyTorch's float F.interpolate of the dequantized input
  prelu         - torch.ao.nn.quantized.PReLU with its quantized slopes "weight" and output scale/zero point
  batch_norm    - torch.ao.nn.quantized.BatchNorm2d/3d (args.relu: torch.nn.intrinsic.quantized.BNReLU2d/3d), its float
                  parameters and running statistics in args
                  (mean's and avg_pool2d's args.channels_last: PyTorch ran it on the input made channels-last; chunk's args.index: which piece)
Every module case holds "inputs" (quantized tensors), "weight"/"bias" where the module has them, "args", the output
"scale"/"zero_point" where the module sets them, and PyTorch's output "expected".
"""
import json
import sys
import warnings

import numpy as np
import torch
import torch.ao.nn.quantized as nnq
import torch.nn.intrinsic.quantized as nniq
import torch.nn.functional as F

warnings.filterwarnings("ignore")
torch.backends.quantized.engine = "onednn"
torch.manual_seed(0)
rng = np.random.default_rng(20261207)


def qtensor(q):
    out = {"dtype": "quint8" if q.dtype == torch.quint8 else "qint8", "shape": list(q.shape),
           "values": [int(v) for v in q.int_repr().reshape(-1).tolist()]}
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        out["scales"] = [float(s) for s in q.q_per_channel_scales().tolist()]
        out["zero_points"] = [int(z) for z in q.q_per_channel_zero_points().tolist()]
        out["axis"] = int(q.q_per_channel_axis())
    else:
        out["scale"] = float(q.q_scale())
        out["zero_point"] = int(q.q_zero_point())
    return out


def floats(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def log_uniform(lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=size))


def qinput(shape, scale=None, zp=None, dtype=torch.quint8):
    """A quantized input with random integer values (and random qparams unless given)."""
    scale = float(log_uniform(0.005, 0.2)) if scale is None else scale
    lo, hi = (0, 255) if dtype == torch.quint8 else (-128, 127)
    zp = int(rng.integers(lo, hi + 1)) if zp is None else zp
    ints = torch.from_numpy(rng.integers(lo, hi + 1, size=shape).astype(np.uint8 if dtype == torch.quint8 else np.int8))
    return torch._make_per_tensor_quantized_tensor(ints, scale, zp)


def qweight(shape, per_channel, scales=None):
    """A symmetric qint8 weight (zero points 0, as onednn requires) with random values, per tensor or along axis 0."""
    ints = torch.from_numpy(rng.integers(-128, 128, size=shape).astype(np.int8))
    if per_channel:
        s = torch.tensor(log_uniform(1e-3, 0.05, shape[0]) if scales is None else scales, dtype=torch.float64)
        return torch._make_per_channel_quantized_tensor(ints, s, torch.zeros(shape[0], dtype=torch.long), 0)
    return torch._make_per_tensor_quantized_tensor(ints, float(log_uniform(1e-3, 0.05)) if scales is None else scales, 0)


def output_qparams(y, spread=1.0, zp=None, dtype=torch.quint8):
    """Output qparams covering the float result's range, shrunk by `spread` (below 1 forces saturation); a computed zero
    point is moved into qint8's range for a qint8 output."""
    lo, hi = float(y.min()), float(y.max())
    scale = max((hi - lo) / 255.0 * spread, 1e-6)
    if zp is None:
        zp = int(np.clip(round(-lo / scale), 0, 255)) if spread >= 1.0 else int(np.clip(round(-(lo + hi) / 2 / scale) + 128, 0, 255))
        if dtype == torch.qint8:
            zp -= 128
    return scale, zp


def module_case(name, kind, inputs, y, args, weight=None, bias=None, scale=None, zp=None):
    c = {"name": name, "kind": kind, "inputs": [qtensor(x) for x in inputs], "args": args, "expected": qtensor(y)}
    if weight is not None:
        c["weight"] = qtensor(weight)
        c["bias"] = None if bias is None else floats(bias)
    if scale is not None:
        c["scale"] = float(scale)
        c["zero_point"] = int(zp)
    return c


def linear_case(name, batch_shape, k, n, per_channel=False, relu=False, bias="normal", spread=1.0, x_zp=None, y_zp=None,
                w_scales=None):
    x = qinput(batch_shape + (k,), zp=x_zp)
    w = qweight((n, k), per_channel, w_scales)
    b = None if bias is None else torch.from_numpy(rng.normal(-3.0 if bias == "negative" else 0.0, 1.0, size=n).astype(np.float32))
    scale, zp = output_qparams(F.linear(x.dequantize(), w.dequantize(), b), spread, y_zp)
    m = nniq.LinearReLU(k, n) if relu else nnq.Linear(k, n)
    m.set_weight_bias(w, b)
    m.scale, m.zero_point = scale, zp
    return module_case(name, "linear", [x], m(x), {"relu": relu}, w, b, scale, zp)


def conv_case(name, n, cin, cout, spatial, kernel, stride=None, padding=None, dilation=None, groups=1, per_channel=False,
              relu=False, bias="normal", spread=1.0, x_zp=None, y_zp=None, w_scales=None):
    """A quantized Conv1d/2d/3d (ConvReLU1d/2d/3d with relu), its rank the kernel's length."""
    rank = len(kernel)
    stride, padding, dilation = stride or (1,) * rank, padding or (0,) * rank, dilation or (1,) * rank
    x = qinput((n, cin) + spatial, zp=x_zp)
    w = qweight((cout, cin // groups) + kernel, per_channel, w_scales)
    b = None if bias is None else torch.from_numpy(rng.normal(-3.0 if bias == "negative" else 0.0, 1.0, size=cout).astype(np.float32))
    y = getattr(F, f"conv{rank}d")(x.dequantize(), w.dequantize(), b, stride, padding, dilation, groups)
    scale, zp = output_qparams(y, spread, y_zp)
    cls = getattr(nniq, f"ConvReLU{rank}d") if relu else getattr(nnq, f"Conv{rank}d")
    m = cls(cin, cout, kernel, stride, padding, dilation, groups)
    m.set_weight_bias(w, b)
    m.scale, m.zero_point = scale, zp
    args = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups, "relu": relu}
    return module_case(name, f"conv{rank}d", [x], m(x), args, w, b, scale, zp)


def quantize_cases():
    cases = []
    x = rng.normal(0.0, 3.0, size=(4, 5, 6)).astype(np.float32)
    # Values exactly halfway between two steps of each scale, and their float32 neighbours.
    ties = lambda s: np.concatenate([((rng.integers(-300, 300, size=200) + 0.5) * np.float64(np.float32(s))).astype(np.float32)] * 1)
    for scale, zp, dtype in [(0.1, 3, torch.quint8), (0.0123, 128, torch.quint8), (1.0 / 3.0, 0, torch.qint8),
                             (1e-4, 255, torch.quint8), (0.07, -128, torch.qint8), (0.02, 127, torch.qint8), (2.5, 0, torch.quint8)]:
        t = ties(scale)
        for label, data in [("normal", x), ("ties", t), ("ties_up", np.nextafter(t, np.float32(np.inf))),
                            ("huge", np.array([1e30, -1e30, 3e9, -3e9, 1e20, 0.0], np.float32))]:
            q = torch.quantize_per_tensor(torch.from_numpy(data), scale, zp, dtype)
            cases.append({"name": f"quantize_per_tensor/{label}/{scale}/{zp}", "kind": "quantize",
                          "x": {"shape": list(data.shape), "data": [float(v) for v in data.reshape(-1)]},
                          "expected": qtensor(q), "dequantized": floats(q.dequantize())})
    for axis, shape in [(0, (6, 7)), (1, (2, 5, 3, 3)), (3, (2, 3, 2, 4)), (1, (3, 4))]:
        data = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        channels = shape[axis]
        scales = torch.tensor(log_uniform(1e-4, 1.0, channels), dtype=torch.float64)
        for dtype in (torch.qint8, torch.quint8):
            lo, hi = (-128, 127) if dtype == torch.qint8 else (0, 255)
            zps = torch.tensor(rng.integers(lo, hi + 1, size=channels), dtype=torch.long)
            q = torch.quantize_per_channel(torch.from_numpy(data), scales, zps, axis, dtype)
            c = {"name": f"quantize_per_channel/axis{axis}/{dtype}", "kind": "quantize",
                 "x": {"shape": list(shape), "data": [float(v) for v in data.reshape(-1)]},
                 "expected": qtensor(q), "dequantized": floats(q.dequantize())}
            cases.append(c)
    return cases


def linear_cases():
    cases = [
        linear_case("linear/batch3", (3,), 16, 8),
        linear_case("linear/batch3_per_channel", (3,), 16, 8, per_channel=True),
        linear_case("linear/relu_batch3", (3,), 16, 8, relu=True),
        linear_case("linear/relu_per_channel", (5,), 40, 12, per_channel=True, relu=True),
        linear_case("linear/x_zp_0_y_zp_255", (4,), 24, 10, x_zp=0, y_zp=255),
        linear_case("linear/x_zp_255_y_zp_0", (4,), 24, 10, x_zp=255, y_zp=0),
        linear_case("linear/negative_bias", (6,), 20, 9, bias="negative"),
        linear_case("linear/negative_bias_relu", (6,), 20, 9, bias="negative", relu=True, per_channel=True),
        linear_case("linear/no_bias", (3,), 33, 7, bias=None),
        linear_case("linear/saturating", (8,), 64, 16, spread=0.2),
        linear_case("linear/saturating_relu", (8,), 64, 16, spread=0.2, relu=True),
        linear_case("linear/per_channel_scales_1e-4_to_1", (5,), 32, 12, per_channel=True,
                    w_scales=np.logspace(-4, 0, 12)),
        linear_case("linear/3d_input", (2, 3), 10, 4),
        linear_case("linear/1x1", (1,), 1, 1),
        linear_case("linear/wide", (2,), 1000, 5, per_channel=True),
        linear_case("linear/large", (64,), 256, 128),
        linear_case("linear/large_per_channel_relu", (64,), 256, 128, per_channel=True, relu=True),
    ]
    for i in range(30):
        cases.append(linear_case(f"linear/random{i}", (int(rng.integers(1, 9)),), int(rng.integers(1, 130)), int(rng.integers(1, 40)),
                                 per_channel=bool(i % 2), relu=bool(i % 3 == 0)))
    return cases


def conv_cases():
    cases = [
        conv_case("conv/3x3", 2, 4, 6, (8, 8), (3, 3)),
        conv_case("conv/3x3_per_channel", 2, 4, 6, (8, 8), (3, 3), per_channel=True),
        conv_case("conv/relu_3x3_pad1", 1, 3, 5, (9, 7), (3, 3), padding=(1, 1), relu=True),
        conv_case("conv/1x1", 2, 8, 4, (5, 5), (1, 1)),
        conv_case("conv/1x1_per_channel_relu", 1, 16, 8, (4, 6), (1, 1), per_channel=True, relu=True),
        conv_case("conv/depthwise", 1, 8, 8, (9, 9), (3, 3), padding=(1, 1), groups=8),
        conv_case("conv/depthwise_per_channel_stride2_relu", 2, 6, 6, (10, 11), (3, 3), stride=(2, 2), padding=(1, 1), groups=6,
                  per_channel=True, relu=True),
        conv_case("conv/depthwise_multiplier2", 1, 4, 8, (7, 7), (3, 3), padding=(1, 1), groups=4, per_channel=True),
        conv_case("conv/grouped", 2, 6, 9, (8, 8), (3, 3), groups=3),
        conv_case("conv/grouped_per_channel", 1, 8, 4, (6, 7), (2, 3), groups=2, per_channel=True),
        conv_case("conv/padding_dilation", 1, 3, 4, (12, 12), (3, 3), padding=(2, 2), dilation=(2, 2)),
        conv_case("conv/asymmetric", 2, 3, 5, (11, 9), (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), per_channel=True),
        conv_case("conv/stride3_5x5", 1, 2, 3, (16, 16), (5, 5), stride=(3, 3), padding=(2, 2)),
        conv_case("conv/x_zp_0_y_zp_255", 1, 4, 4, (6, 6), (3, 3), x_zp=0, y_zp=255),
        conv_case("conv/x_zp_255_y_zp_0", 1, 4, 4, (6, 6), (3, 3), x_zp=255, y_zp=0, relu=True),
        conv_case("conv/negative_bias", 2, 4, 6, (6, 6), (3, 3), bias="negative"),
        conv_case("conv/negative_bias_relu", 2, 4, 6, (6, 6), (3, 3), bias="negative", relu=True),
        conv_case("conv/no_bias", 1, 5, 3, (7, 7), (3, 3), bias=None, per_channel=True),
        conv_case("conv/saturating", 2, 8, 8, (6, 6), (3, 3), spread=0.2),
        conv_case("conv/saturating_relu", 2, 8, 8, (6, 6), (3, 3), spread=0.2, relu=True, per_channel=True),
        conv_case("conv/per_channel_scales_1e-4_to_1", 1, 4, 10, (6, 6), (3, 3), per_channel=True, w_scales=np.logspace(-4, 0, 10)),
        conv_case("conv/kernel_equals_input", 2, 3, 4, (3, 3), (3, 3)),
        conv_case("conv/large", 2, 16, 32, (16, 16), (3, 3), padding=(1, 1)),
        conv_case("conv/large_depthwise_per_channel_relu", 1, 32, 32, (20, 20), (3, 3), padding=(1, 1), groups=32,
                  per_channel=True, relu=True),
        conv_case("conv/large_1x1_per_channel", 2, 64, 32, (8, 8), (1, 1), per_channel=True),
    ]
    for i in range(40):
        groups = int(rng.choice([1, 1, 2, 3]))
        cin, cout = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
        if i % 5 == 0:
            groups = cin = cout = int(rng.integers(1, 9))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        hw = (int(rng.integers(dilation[0] * (kernel[0] - 1) + 1, 13)), int(rng.integers(dilation[1] * (kernel[1] - 1) + 1, 13)))
        cases.append(conv_case(f"conv/random{i}", int(rng.integers(1, 3)), cin, cout, hw, kernel,
                               stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                               padding=(int(rng.integers(0, 3)), int(rng.integers(0, 3))), dilation=dilation, groups=groups,
                               per_channel=bool(i % 2), relu=bool(i % 3 == 0)))
    return cases


def conv_nd_cases():
    """Conv1d and Conv3d (and their ReLU fusions): per-tensor and per-channel weights, groups, depthwise, stride,
    padding, dilation, saturation, no bias, then seeded random geometries."""
    cases = [
        conv_case("conv1d/k3", 2, 4, 6, (17,), (3,)),
        conv_case("conv1d/k3_per_channel_pad1_relu", 2, 4, 6, (17,), (3,), padding=(1,), per_channel=True, relu=True),
        conv_case("conv1d/k1", 3, 8, 5, (9,), (1,)),
        conv_case("conv1d/depthwise_stride2", 2, 8, 8, (20,), (5,), stride=(2,), padding=(2,), groups=8, per_channel=True),
        conv_case("conv1d/grouped_dilated", 1, 6, 9, (25,), (3,), dilation=(3,), padding=(2,), groups=3),
        conv_case("conv1d/no_bias_saturating", 2, 5, 7, (12,), (4,), bias=None, spread=0.2),
        conv_case("conv1d/negative_bias_relu", 2, 4, 4, (10,), (3,), bias="negative", relu=True, x_zp=255, y_zp=0),
        conv_case("conv1d/large", 2, 32, 64, (64,), (3,), padding=(1,), per_channel=True),
        conv_case("conv3d/k3", 2, 3, 4, (5, 6, 7), (3, 3, 3)),
        conv_case("conv3d/k3_per_channel_pad1_relu", 1, 4, 6, (4, 6, 5), (3, 3, 3), padding=(1, 1, 1), per_channel=True, relu=True),
        conv_case("conv3d/k1", 2, 6, 5, (3, 4, 4), (1, 1, 1)),
        conv_case("conv3d/depthwise", 1, 6, 6, (5, 7, 6), (3, 3, 3), padding=(1, 1, 1), groups=6, per_channel=True),
        conv_case("conv3d/grouped_strided", 2, 6, 8, (7, 8, 9), (3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1), groups=2),
        conv_case("conv3d/dilated_depth", 1, 3, 5, (9, 6, 6), (3, 3, 3), dilation=(2, 1, 1), padding=(2, 1, 0), per_channel=True),
        conv_case("conv3d/pad_beyond_depth", 1, 2, 3, (1, 5, 5), (1, 3, 3), padding=(2, 1, 1)),
        conv_case("conv3d/no_bias_saturating_relu", 2, 4, 4, (4, 5, 5), (2, 3, 3), bias=None, spread=0.2, relu=True),
        conv_case("conv3d/large", 1, 16, 32, (8, 12, 12), (3, 3, 3), padding=(1, 1, 1), per_channel=True),
    ]
    for i in range(24):
        rank = 1 if i % 2 == 0 else 3
        groups = int(rng.choice([1, 1, 2, 3]))
        cin, cout = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
        if i % 5 == 0:
            groups = cin = cout = int(rng.integers(1, 9))
        kernel = tuple(int(rng.integers(1, 4)) for _ in range(rank))
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(rank))
        spatial = tuple(int(rng.integers(d * (k - 1) + 1, 10 if rank == 3 else 30)) for k, d in zip(kernel, dilation))
        cases.append(conv_case(f"conv{rank}d/random{i}", int(rng.integers(1, 3)), cin, cout, spatial, kernel,
                               stride=tuple(int(rng.integers(1, 3)) for _ in range(rank)),
                               padding=tuple(int(rng.integers(0, 3)) for _ in range(rank)), dilation=dilation, groups=groups,
                               per_channel=bool(i % 4 < 2), relu=bool(i % 3 == 0)))
    return cases


def batch_norm_cases():
    """BatchNorm2d/3d and BNReLU2d/3d: channel counts around PyTorch's vector blocks (32 lanes on AVX2, 8-wide remainder,
    scalar tail), eps from 1e-5 to 1e-1, tiny variances, saturating output qparams, input zero points at both ends."""
    cases = []
    for i, (shape, relu, spread, x_zp, eps) in enumerate([
            ((2, 3, 5, 6), False, 1.0, None, 1e-5), ((2, 8, 4, 4), True, 1.0, None, 1e-5), ((1, 13, 6, 7), False, 1.0, 0, 1e-3),
            ((2, 40, 3, 5), True, 1.0, 255, 1e-5), ((1, 64, 4, 4), False, 0.3, None, 0.1), ((2, 77, 3, 3), True, 0.3, None, 1e-5),
            ((2, 3, 2, 4, 5), False, 1.0, None, 1e-5), ((1, 8, 3, 3, 3), True, 1.0, None, 1e-5), ((2, 45, 2, 3, 3), False, 1.0, None, 1e-4),
            ((1, 70, 2, 2, 3), True, 0.3, None, 1e-5), ((0, 5, 3, 3), False, 1.0, None, 1e-5), ((3, 1, 9, 9), True, 1.0, None, 1e-5)]):
        rank = len(shape) - 2
        c = shape[1]
        x = qinput(shape, zp=x_zp)
        weight = torch.from_numpy(rng.uniform(0.25, 1.75, size=c).astype(np.float32))
        bias = torch.from_numpy(rng.normal(0.0, 1.0, size=c).astype(np.float32))
        mean = torch.from_numpy(rng.normal(0.0, 0.5, size=c).astype(np.float32))
        var = torch.from_numpy(log_uniform(1e-4, 2.0, c).astype(np.float32))
        bn = torch.nn.BatchNorm2d(c, eps=eps) if rank == 2 else torch.nn.BatchNorm3d(c, eps=eps)
        bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var = weight, bias, mean, var
        bn.eval()
        y = bn(x.dequantize()) if x.numel() else torch.zeros(1)
        scale, zp = output_qparams(torch.relu(y) if relu else y, spread)
        cls = getattr(nniq, f"BNReLU{rank}d") if relu else getattr(nnq, f"BatchNorm{rank}d")
        m = cls(c, eps=eps)
        m.weight.data, m.bias.data, m.running_mean, m.running_var = weight, bias, mean, var
        m.scale, m.zero_point = torch.tensor(scale), torch.tensor(zp)
        args = {"rank": rank, "relu": relu, "eps": eps, "weight": floats(weight), "bias": floats(bias), "running_mean": floats(mean),
                "running_var": floats(var)}
        cases.append(module_case(f"batch_norm{rank}d/{i}", "batch_norm", [x], m(x), args, scale=float(m.scale), zp=int(m.zero_point)))
    return cases


def leaky_relu_elu_cases():
    """LeakyReLU and ELU (nnq modules with their output qparams): slopes and alphas from 1e-3 to 2, sizes that leave a
    tail after PyTorch's vector blocks, quint8 and qint8 inputs, saturating output qparams."""
    cases = []
    for i, (shape, slope, spread, dtype) in enumerate([((2, 16, 9, 9), 0.01, 1.0, torch.quint8), ((3, 37), 0.2, 1.0, torch.quint8),
                                                       ((1, 960, 1, 1), 0.5, 1.0, torch.quint8), ((5,), 1e-3, 1.0, torch.qint8),
                                                       ((2, 8, 7, 5), 2.0, 0.3, torch.quint8), ((4, 100), 0.1, 1.0, torch.qint8)]):
        x = qinput(shape, dtype=dtype)
        for kind in ("leaky_relu", "elu"):
            y = F.leaky_relu(x.dequantize(), slope) if kind == "leaky_relu" else F.elu(x.dequantize(), slope)
            scale, zp = output_qparams(y, spread, dtype=dtype)
            if kind == "leaky_relu":
                m = nnq.LeakyReLU(scale, zp, slope)
                args = {"negative_slope": slope}
            else:
                m = nnq.ELU(scale, zp, slope)
                args = {"alpha": slope}
            # LeakyReLU keeps its qparams as float32 and int64 buffers: its kernel sees the float32 scale.
            cases.append(module_case(f"{kind}/{i}", kind, [x], m(x), args, scale=float(m.scale), zp=int(m.zero_point)))
        # sigmoid (the float nn.Sigmoid on a quantized tensor): PyTorch's fixed output qparams.
        cases.append(module_case(f"sigmoid/{i}", "sigmoid", [x], torch.sigmoid(x), {}))
    return cases


def norm_affine(size, affine):
    """A norm's weight ~ U(0.5, 1.5) and bias ~ N(0, 0.3) of `size`, drawn in that order, or (None, None)."""
    if not affine:
        return None, None
    return (torch.from_numpy(rng.uniform(0.5, 1.5, size=size).astype(np.float32)),
            torch.from_numpy(rng.normal(0.0, 0.3, size=size).astype(np.float32)))


def parameter(t):
    """`t` as an nn.Parameter, None as None."""
    return None if t is None else torch.nn.Parameter(t)


def optional_floats(t):
    """`t` as a list of floats, None as None."""
    return None if t is None else floats(t)


def layer_norm_cases():
    """LayerNorm over one to three trailing dimensions, with and without elementwise affine, groups from 5 to 4096
    elements (sums of squares past float32's exact integers), eps up to 1e-1, quint8 and qint8 inputs."""
    cases = []
    for i, (shape, normalized, affine, eps, dtype) in enumerate([
            ((4, 8), (8,), True, 1e-5, torch.quint8), ((2, 3, 37), (37,), True, 1e-5, torch.quint8), ((2, 5, 6, 6), (5, 6, 6), True, 1e-5, torch.quint8),
            ((3, 4, 5), (4, 5), False, 1e-3, torch.quint8), ((2, 4096), (4096,), True, 1e-5, torch.quint8), ((6, 100), (100,), True, 0.1, torch.qint8),
            ((1, 7, 5), (5,), False, 1e-5, torch.qint8), ((2, 64, 3, 3), (64, 3, 3), True, 1e-5, torch.quint8)]):
        x = qinput(shape, dtype=dtype)
        weight, bias = norm_affine(normalized, affine)
        y = F.layer_norm(x.dequantize(), normalized, weight, bias, eps)
        scale, zp = output_qparams(y, dtype=dtype)
        m = nnq.LayerNorm(list(normalized), parameter(weight), parameter(bias), scale, zp, eps=eps, elementwise_affine=affine)
        args = {"normalized_shape": list(normalized), "eps": eps, "weight": optional_floats(weight), "bias": optional_floats(bias)}
        cases.append(module_case(f"layer_norm/{i}", "layer_norm", [x], m(x), args, scale=float(m.scale), zp=int(m.zero_point)))
    return cases


def group_norm_cases():
    """GroupNorm: one group, one channel per group and between, with and without affine, planes that leave a tail after
    PyTorch's vector blocks, quint8 and qint8 inputs."""
    cases = []
    for i, (shape, groups, affine, eps, dtype) in enumerate([
            ((2, 6, 5, 5), 3, True, 1e-5, torch.quint8), ((2, 8, 4, 4), 1, True, 1e-5, torch.quint8), ((1, 6, 7, 9), 6, True, 1e-3, torch.quint8),
            ((3, 4, 37), 2, False, 1e-5, torch.quint8), ((2, 32, 8, 8), 8, True, 1e-5, torch.quint8), ((2, 6, 3, 3, 3), 2, True, 1e-5, torch.qint8),
            ((4, 12, 1), 4, True, 0.1, torch.quint8)]):
        c = shape[1]
        x = qinput(shape, dtype=dtype)
        weight, bias = norm_affine(c, affine)
        y = F.group_norm(x.dequantize(), groups, weight, bias, eps)
        scale, zp = output_qparams(y, dtype=dtype)
        m = nnq.GroupNorm(groups, c, parameter(weight), parameter(bias), scale, zp, eps=eps, affine=affine)
        args = {"num_groups": groups, "eps": eps, "weight": optional_floats(weight), "bias": optional_floats(bias)}
        cases.append(module_case(f"group_norm/{i}", "group_norm", [x], m(x), args, scale=float(m.scale), zp=int(m.zero_point)))
    # InstanceNorm1d/2d/3d: PyTorch's quantized instance norm is its group norm with one group per channel.
    for i, (shape, affine) in enumerate([((2, 5, 17), True), ((2, 4, 6, 7), True), ((1, 3, 6, 6), False), ((2, 3, 3, 4, 5), True)]):
        c, rank = shape[1], len(shape) - 2
        x = qinput(shape)
        weight, bias = norm_affine(c, affine)
        scale, zp = output_qparams(F.instance_norm(x.dequantize(), weight=weight, bias=bias))
        m = getattr(nnq, f"InstanceNorm{rank}d")(c, parameter(weight), parameter(bias), scale, zp, affine=affine)
        args = {"num_groups": c, "eps": m.eps, "weight": optional_floats(weight), "bias": optional_floats(bias)}
        cases.append(module_case(f"instance_norm{rank}d/{i}", "group_norm", [x], m(x), args, scale=float(m.scale), zp=int(m.zero_point)))
    return cases


def functional_cases():
    cases = []
    shapes = [(2, 3, 4, 5), (1, 40), (7,), (2, 5, 9, 9), (3, 1, 33)]
    for i, shape in enumerate(shapes * 3):
        dtype = torch.qint8 if i % 4 == 3 else torch.quint8
        a = qinput(shape, dtype=dtype)
        b = qinput(shape, dtype=dtype)
        lo, hi = (0, 255) if dtype == torch.quint8 else (-128, 127)
        ends = {0: lo, 1: hi}
        scale = float(log_uniform(0.005, 0.3))
        zp = ends.get(i % 5, int(rng.integers(lo, hi + 1)))
        qf = nnq.QFunctional()
        qf.scale, qf.zero_point = scale, zp
        for op in ("add", "add_relu", "mul"):
            y = getattr(qf, op)(a, b)
            cases.append(module_case(f"{op}/{i}/{list(shape)}", op, [a, b], y, {}, scale=scale, zp=zp))
        dim = int(rng.integers(0, len(shape)))
        c_shape = list(shape)
        c_shape[dim] = max(1, shape[dim] - 1)
        parts = [a, qinput(tuple(c_shape), dtype=dtype), b]
        y = qf.cat(parts, dim)
        cases.append(module_case(f"cat/{i}/dim{dim}", "cat", parts, y, {"dim": dim}, scale=scale, zp=zp))
        cases.append(module_case(f"relu/{i}", "relu", [a], F.relu(a), {}))
    for i, (shape, kernel, stride, padding, dilation, ceil) in enumerate([
            ((1, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), False),
            ((2, 4, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), False),
            ((2, 4, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1), True),
            ((1, 2, 10, 11), (3, 2), (1, 2), (1, 0), (2, 1), False),
            ((1, 5, 6, 6), (1, 1), (1, 1), (0, 0), (1, 1), False),
            ((3, 9, 9), (3, 3), (2, 2), (1, 1), (1, 1), True)]):
        x = qinput(shape)
        y = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil)
        args = {"kernel": list(kernel), "stride": list(stride), "padding": list(padding), "dilation": list(dilation), "ceil_mode": ceil}
        cases.append(module_case(f"max_pool2d/{i}", "max_pool2d", [x], y, args))
    for i, (shape, out) in enumerate([((1, 3, 8, 8), (1, 1)), ((2, 4, 7, 9), (3, 4)), ((1, 2, 5, 5), (5, 5)),
                                      ((1, 6, 13, 10), (2, 3)), ((2, 3, 6, 6), (4, 4)), ((1, 8, 7, 7), (1, 1)),
                                      # one channel, or 1x1 planes: the input is also channels-last, PyTorch's NHWC kernel
                                      ((2, 1, 13, 10), (4, 3)), ((1, 1, 9, 9), (2, 2)), ((2, 3, 1, 1), (2, 2)),
                                      # rank 3
                                      ((3, 9, 7), (2, 3)), ((1, 11, 5), (4, 2))]):
        x = qinput(shape)
        y = F.adaptive_avg_pool2d(x, out)
        cases.append(module_case(f"adaptive_avg_pool2d/{i}", "adaptive_avg_pool2d", [x], y, {"output_size": list(out)}))
    for i, (shape, start, end) in enumerate([((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, 2), ((6, 7), 1, -1)]):
        x = qinput(shape)
        y = torch.flatten(x, start, end)
        cases.append(module_case(f"flatten/{i}", "flatten", [x], y, {"start_dim": start, "end_dim": end}))
    # mean over the innermost dimensions: a contiguous input (PyTorch's integer kernel) and a channels-last one (its
    # float path, whose AVX2 sum runs channels in blocks of 32 and a tail), planes from 1x1 to 14x14.
    for i, (shape, dims, keepdim) in enumerate([((2, 1024, 2, 2), [2, 3], False), ((2, 40, 7, 7), [2, 3], False),
                                                 ((1, 100, 14, 14), [-2, -1], True), ((3, 8, 3, 5), [2, 3], False),
                                                 ((2, 64, 5, 5), [2, 3], False), ((2, 1, 6, 6), [2, 3], False),
                                                 ((2, 48, 1, 1), [2, 3], False), ((4, 9, 10), [2], False)]):
        x = qinput(shape)
        for layout in ("contiguous", "channels_last") if len(shape) == 4 else ("contiguous",):
            xl = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
            y = xl.mean(dims, keepdim=keepdim)
            cases.append(module_case(f"mean/{i}/{layout}", "mean", [x], y, {"dim": dims, "keepdim": keepdim, "channels_last": layout == "channels_last"}))
    # avg_pool2d (inception_v3's branch pools): padding, ceil_mode, count_include_pad and divisor_override, on a
    # contiguous input (PyTorch's NCHW kernel; one channel is channels-last too) and a channels-last one (its NHWC kernel).
    for i, (shape, kernel, stride, padding, ceil, include, divisor) in enumerate([
            ((2, 8, 9, 9), 3, 1, 1, False, True, None), ((2, 5, 7, 6), 2, 2, 1, False, False, None),
            ((1, 6, 10, 7), (3, 2), (2, 1), (1, 0), True, True, None), ((2, 4, 8, 11), 3, 2, 1, True, False, None),
            ((1, 3, 6, 6), 2, 2, 0, False, True, 3), ((2, 1, 9, 8), 3, 1, 1, False, True, None),
            ((2, 64, 5, 5), 3, 1, 1, False, True, None), ((3, 7, 7), 2, 1, 0, False, True, None)]):
        x = qinput(shape)
        for layout in ("contiguous", "channels_last") if len(shape) == 4 else ("contiguous",):
            xl = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
            y = F.avg_pool2d(xl, kernel, stride, padding, ceil_mode=ceil, count_include_pad=include, divisor_override=divisor)
            pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]
            cases.append(module_case(f"avg_pool2d/{i}/{layout}", "avg_pool2d", [x], y,
                                     {"kernel": pair(kernel), "stride": pair(stride), "padding": pair(padding), "ceil_mode": ceil,
                                      "count_include_pad": include, "divisor_override": divisor, "channels_last": layout == "channels_last"}))
    # mul broadcasting, as mobilenet_v3's squeeze-excitation multiplies [N, C, H, W] by [N, C, 1, 1].
    for i, (sa, sb) in enumerate([((2, 72, 1, 1), (2, 72, 8, 8)), ((2, 5, 6, 7), (2, 5, 1, 1)), ((3, 1, 4), (2, 1)), ((4,), (3, 1))]):
        a, b = qinput(sa), qinput(sb)
        qf = nnq.QFunctional()
        qf.scale, qf.zero_point = float(log_uniform(0.005, 0.3)), int(rng.integers(0, 256))
        cases.append(module_case(f"mul/broadcast/{i}", "mul", [a, b], qf.mul(a, b), {}, scale=qf.scale, zp=qf.zero_point))
    # Hardswish (nnq.Hardswish with its output qparams) and hardsigmoid (PyTorch's fixed output qparams), over sizes
    # that leave a tail after PyTorch's 64-element vector blocks, on quint8 and qint8 inputs.
    for i, shape in enumerate([(2, 16, 9, 9), (3, 37), (1, 960, 1, 1), (5,), (2, 8, 7, 5)]):
        dtype = torch.qint8 if i == 3 else torch.quint8
        x = qinput(shape, dtype=dtype)
        scale = float(log_uniform(0.005, 0.1))
        zp = int(rng.integers(0, 256)) if dtype == torch.quint8 else int(rng.integers(-128, 128))
        cases.append(module_case(f"hardswish/{i}", "hardswish", [x], nnq.Hardswish(scale, zp)(x), {}, scale=scale, zp=zp))
        cases.append(module_case(f"hardsigmoid/{i}", "hardsigmoid", [x], F.hardsigmoid(x), {}))
        cases.append(module_case(f"relu6/{i}", "relu6", [x], nnq.ReLU6()(x), {}))
    # relu6 where 6 lies beyond the dtype's range, and where 0 does
    for i, (scale, zp) in enumerate([(0.01, 10), (0.05, 250), (0.02, 0)]):
        x = qinput((3, 50), scale=scale, zp=zp)
        cases.append(module_case(f"relu6/range/{i}", "relu6", [x], F.relu6(x), {}))
    # transpose(...).contiguous() as shufflenet's channel shuffle does it, and chunk's pieces.
    for i, (shape, d0, d1) in enumerate([((2, 2, 58, 4, 4), 1, 2), ((3, 4, 5), 0, -1), ((6, 7), 1, 0)]):
        x = qinput(shape)
        cases.append(module_case(f"transpose/{i}", "transpose", [x], torch.transpose(x, d0, d1).contiguous(), {"dim0": d0, "dim1": d1}))
    for i, (shape, chunks, dim) in enumerate([((2, 116, 4, 4), 2, 1), ((2, 7, 3), 3, 1), ((5, 4), 4, 0), ((3, 2), 5, -1)]):
        x = qinput(shape)
        for k, piece in enumerate(x.chunk(chunks, dim)):
            cases.append(module_case(f"chunk/{i}/{k}", "chunk", [x], piece.contiguous(), {"chunks": chunks, "dim": dim, "index": k,
                                                                                        "pieces": len(x.chunk(chunks, dim))}))
    return cases


def conv_transpose_case(name, n, cin, cout, spatial, kernel, stride=None, padding=None, dilation=None, groups=1,
                        bias="normal", spread=1.0, x_zp=None, y_zp=None):
    """A quantized ConvTranspose1d/2d/3d, its rank the kernel's length; a per-tensor weight [C_in, C_out / groups,
    *kernel] (PyTorch 1.13 takes no other for transposed convolutions) and output_padding 0 (onednn takes no other)."""
    rank = len(kernel)
    stride, padding, dilation = stride or (1,) * rank, padding or (0,) * rank, dilation or (1,) * rank
    x = qinput((n, cin) + tuple(spatial), zp=x_zp)
    w = qweight((cin, cout // groups) + tuple(kernel), False)
    b = None if bias is None else torch.from_numpy(rng.normal(-3.0 if bias == "negative" else 0.0, 1.0, size=cout).astype(np.float32))
    f = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
    scale, zp = output_qparams(f(x.dequantize(), w.dequantize(), b, stride, padding, 0, groups, dilation), spread, y_zp)
    cls = {1: nnq.ConvTranspose1d, 2: nnq.ConvTranspose2d, 3: nnq.ConvTranspose3d}[rank]
    m = cls(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=b is not None, dilation=dilation)
    m.set_weight_bias(w, b)
    m.scale, m.zero_point = scale, zp
    args = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups}
    return module_case(name, f"conv_transpose{rank}d", [x], m(x), args, w, b, scale, zp)


def conv_transpose_cases():
    """ConvTranspose1d/2d/3d: stride (the upsampling case), padding, dilation, groups, depthwise, no bias, saturation,
    input zero points at both ends, then seeded random geometries."""
    cases = [
        conv_transpose_case("conv_transpose2d/k3", 2, 4, 6, (5, 6), (3, 3)),
        conv_transpose_case("conv_transpose2d/k2_stride2", 1, 8, 4, (7, 7), (2, 2), stride=(2, 2)),
        conv_transpose_case("conv_transpose2d/k4_stride2_pad1", 2, 6, 6, (6, 5), (4, 4), stride=(2, 2), padding=(1, 1)),
        conv_transpose_case("conv_transpose2d/grouped_dilated", 1, 6, 9, (6, 6), (3, 3), dilation=(2, 2), padding=(1, 2), groups=3),
        conv_transpose_case("conv_transpose2d/depthwise", 2, 8, 8, (5, 5), (3, 3), stride=(2, 1), groups=8),
        conv_transpose_case("conv_transpose2d/no_bias_saturating", 2, 5, 7, (6, 4), (3, 2), bias=None, spread=0.2),
        conv_transpose_case("conv_transpose2d/negative_bias_zero_points_at_ends", 2, 4, 4, (5, 5), (3, 3), bias="negative", x_zp=255, y_zp=0),
        conv_transpose_case("conv_transpose2d/large", 1, 32, 16, (12, 12), (3, 3), stride=(2, 2), padding=(1, 1)),
        conv_transpose_case("conv_transpose1d/k3", 2, 4, 6, (17,), (3,)),
        conv_transpose_case("conv_transpose1d/stride2_pad1", 2, 4, 3, (9,), (4,), stride=(2,), padding=(1,)),
        conv_transpose_case("conv_transpose1d/grouped_dilated", 1, 6, 4, (8,), (3,), dilation=(3,), groups=2),
        conv_transpose_case("conv_transpose3d/k3", 1, 3, 4, (3, 4, 5), (3, 3, 3)),
        conv_transpose_case("conv_transpose3d/stride2_grouped", 2, 4, 6, (3, 3, 4), (2, 2, 2), stride=(2, 2, 2), groups=2),
        conv_transpose_case("conv_transpose3d/pad_dilated_no_bias", 1, 2, 3, (4, 4, 4), (3, 2, 3), padding=(1, 0, 1), dilation=(1, 2, 1), bias=None),
    ]
    for i in range(18):
        rank = [1, 2, 3][i % 3]
        groups = int(rng.choice([1, 1, 2, 3]))
        cin, cout = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 5))
        kernel = tuple(int(rng.integers(1, 4)) for _ in range(rank))
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(rank))
        # padding at most dilation·(kernel − 1) / 2, so that every output dimension stays at least 1
        padding = tuple(int(rng.integers(0, d * (k - 1) // 2 + 1)) for k, d in zip(kernel, dilation))
        spatial = tuple(int(rng.integers(1, 6 if rank == 3 else 12)) for _ in range(rank))
        cases.append(conv_transpose_case(f"conv_transpose{rank}d/random{i}", int(rng.integers(1, 3)), cin, cout, spatial, kernel,
                                         stride=tuple(int(rng.integers(1, 4)) for _ in range(rank)), padding=padding,
                                         dilation=dilation, groups=groups, bias="normal" if i % 4 else None))
    return cases


def prelu_cases():
    """torch.ao.nn.quantized.PReLU: one slope or one per channel, weight qparams whose quantized 1.0 is exact (scale 1.0,
    zero point 0, as from_float makes them), inexact and saturated, negative slopes, both dtypes of 2-d to 4-d inputs,
    saturating output qparams."""
    cases = []
    weight_qparams = [(1.0, 0), (0.25, 0), (0.3, 10), (0.004, 0), (0.02, 200), (0.7, 128)]
    for i in range(24):
        dtype = torch.qint8 if i % 6 == 5 else torch.quint8
        rank = [2, 3, 4][i % 3]
        c = int(rng.integers(1, 6))
        shape = (int(rng.integers(1, 3)), c) + tuple(int(rng.integers(1, 13)) for _ in range(rank - 2))
        n = 1 if i % 2 == 0 else c
        x = qinput(shape, dtype=dtype)
        ws, wz = weight_qparams[i % len(weight_qparams)]
        if dtype == torch.qint8:
            wz -= 128
        w = torch.quantize_per_tensor(torch.from_numpy(rng.uniform(-1.5, 2.0, size=n).astype(np.float32)), ws, wz, dtype)
        scale, zp = output_qparams(F.prelu(x.dequantize(), w.dequantize()), 0.3 if i % 7 == 3 else 1.0, dtype=dtype)
        m = nnq.PReLU(scale, zp, n)
        m.set_weight(w)
        c_ = module_case(f"prelu/{i}", "prelu", [x], m(x), {}, scale=scale, zp=zp)
        c_["weight"] = qtensor(w)
        cases.append(c_)
    return cases


def upsample_cases():
    """F.interpolate on quantized tensors (what nn.Upsample, UpsamplingNearest2d and UpsamplingBilinear2d call):
    nearest and bilinear with align_corners both ways, by size and by scale factor (integer, fractional, below 1, a
    size that does not change, recompute_scale_factor), on contiguous and channels-last inputs (PyTorch's NCHW and NHWC
    kernels, and the NHWC kernel's 8-channel vector blocks and scalar tail), one channel, 1x1 planes (which PyTorch 1.13
    runs through its NHWC kernel into a contiguous output), both dtypes."""
    cases = []
    fixed = [((2, 3, 4, 5), None, (2.0, 2.0), None), ((1, 4, 3, 3), None, (1.2, 1.2), None), ((2, 3, 6, 4), (6, 4), None, None),
             ((1, 3, 5, 7), None, (1.5, 0.5), None), ((2, 2, 4, 4), None, (1.7, 2.3), True), ((1, 3, 1, 1), None, (3.0, 2.0), None),
             ((2, 1, 5, 3), (7, 2), None, None), ((1, 5, 2, 6), None, (1.3, 1.0), None), ((1, 8, 9, 9), (18, 17), None, None),
             ((2, 19, 5, 4), None, (2.0, 2.5), None), ((1, 33, 3, 4), (7, 5), None, None), ((1, 12, 4, 4), None, (1.0, 1.0), None)]
    shapes = fixed + [None] * 30
    for i, spec in enumerate(shapes):
        if spec is None:
            n, c = int(rng.integers(1, 3)), int(rng.integers(1, 6))
            shape = (n, c, int(rng.integers(1, 9)), int(rng.integers(1, 9)))
            if i % 3 == 0:
                size, sf, rec = (int(rng.integers(1, 17)), int(rng.integers(1, 17))), None, None
            else:
                size = None
                sf = (float(rng.choice([2.0, 3.0, 1.5, 0.5, 2.5, 1.7, 1.25, 4.0])), float(rng.choice([2.0, 1.3, 0.75, 3.0, 1.0])))
                rec = bool(i % 4 == 0) if i % 2 else None
        else:
            shape, size, sf, rec = spec
        dtype = torch.qint8 if i % 7 == 6 else torch.quint8
        for channels_last in (False, True):
            x = qinput(shape, dtype=dtype)
            if channels_last:
                # channels-last strides as a quantized convolution's output has them, also where the layouts coincide
                # (x.contiguous(memory_format=...) would keep a 1x1 plane's contiguous strides)
                cl = torch._empty_affine_quantized(x.shape, scale=x.q_scale(), zero_point=x.q_zero_point(), dtype=x.dtype,
                                                   memory_format=torch.channels_last)
                x = cl.copy_(x)
            for mode, align in (("nearest", None), ("bilinear", False), ("bilinear", True)):
                try:
                    y = F.interpolate(x, size=size, scale_factor=sf, mode=mode, align_corners=align, recompute_scale_factor=rec)
                except RuntimeError:
                    continue   # an output dimension of 0 (PyTorch asserts)
                args = {"size": None if size is None else list(size), "scale_factor": None if sf is None else list(sf), "mode": mode,
                        "align_corners": align, "recompute_scale_factor": rec, "channels_last": channels_last}
                case_ = module_case(f"upsample/{i}/{mode}{'' if align is None else '_align' if align else ''}{'/cl' if channels_last else ''}",
                                    "upsample", [x.contiguous()], y.contiguous(), args)
                # PyTorch's float forward on the dequantized input, for the engine's float interpolate (calibration's)
                case_["float_expected"] = floats(F.interpolate(x.dequantize().contiguous(), size=size, scale_factor=sf, mode=mode,
                                                               align_corners=align, recompute_scale_factor=rec))
                cases.append(case_)
    return cases


def converted_cases():
    """The quantized modules torch.ao.quantization's eager convert() makes from a small float network (onednn's default
    qconfig: histogram-observed activations, per-channel symmetric weights), each replayed on the input it saw."""
    import torch.nn as nn
    import torch.ao.quantization as tq
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Conv2d(8, 6, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 7 * 7, 20), nn.ReLU(), nn.Linear(20, 5))
    net.eval()
    net = tq.fuse_modules(net, [["0", "1"], ["3", "4"], ["6", "7"]])
    model = tq.QuantWrapper(net)
    model.qconfig = tq.get_default_qconfig("onednn")
    tq.prepare(model, inplace=True)
    for _ in range(4):
        model(torch.from_numpy(rng.normal(0.0, 1.0, size=(2, 3, 7, 7)).astype(np.float32)))
    tq.convert(model, inplace=True)
    seen = []
    for name, m in model.module.named_children():
        m.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, mod, inp[0], out)))
    model(torch.from_numpy(rng.normal(0.0, 1.0, size=(3, 3, 7, 7)).astype(np.float32)))
    cases = []
    for name, m, x, y in seen:
        relu = type(m).__name__.endswith("ReLU") or type(m).__name__.endswith("ReLU2d")
        if isinstance(m, nnq.Conv2d):
            args = {"stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation), "groups": m.groups, "relu": relu}
            cases.append(module_case(f"converted/{name}/{type(m).__name__}", "conv2d", [x], y, args, m.weight(), m.bias(), m.scale, m.zero_point))
        elif isinstance(m, nnq.Linear):
            cases.append(module_case(f"converted/{name}/{type(m).__name__}", "linear", [x], y, {"relu": relu}, m.weight(), m.bias(), m.scale, m.zero_point))
        elif isinstance(m, nn.Flatten):
            cases.append(module_case(f"converted/{name}/Flatten", "flatten", [x], y, {"start_dim": m.start_dim, "end_dim": m.end_dim}))
    return cases


def main(out):
    # Kinds added later come last, so that the seeded inputs of the earlier cases stay as they were.
    cases = quantize_cases() + linear_cases() + conv_cases() + functional_cases() + converted_cases() + conv_nd_cases() + batch_norm_cases() + leaky_relu_elu_cases() + layer_norm_cases() + group_norm_cases()
    cases += conv_transpose_cases() + prelu_cases() + upsample_cases()
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "engine": torch.backends.quantized.engine, "cases": cases}, f)
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1])
