"""PyTorch's side of QuantizedStateDictTests.fs: builds PyTorch's converted model from a case's fused float model
(FLOAT.pt, saved by ptq_fixtures.py) with the named qconfig (prepare, convert), loads PyTorch's own calibrated state
(THEIRS.pt) and runs it on the case's input on the onednn engine; then loads the quantized state_dict written by
Fusion.Dsl.Quantization (OURS.pt, QuantizedStateDict.Save) with load_state_dict(strict=True) and runs it again. Writes
OUT.json: how the DeQuantStub's integer input with our state compares with PyTorch's own (fraction equal, worst step),
and saves the model's state_dict after loading ours (RESAVED.pt), which the test reads back and compares with what it
wrote, bit for bit.

Usage: /usr/bin/python3 quantized_state_dict_check.py FLOAT.pt QCONFIG THEIRS.pt OURS.pt INPUT.npy RESAVED.pt OUT.json"""
import __main__
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.ao.quantization as tq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptq_fixtures  # noqa: E402

# FLOAT.pt pickles ptq_fixtures' classes as __main__.ConvNet, __main__.Residual, ... (one alias per model class).
__main__.ConvNet = ptq_fixtures.ConvNet
__main__.Residual = ptq_fixtures.Residual
__main__.ActNet = ptq_fixtures.ActNet
__main__.Conv1dNet = ptq_fixtures.Conv1dNet
__main__.Conv3dNet = ptq_fixtures.Conv3dNet
__main__.BnNet = ptq_fixtures.BnNet
__main__.LeakyEluNet = ptq_fixtures.LeakyEluNet
__main__.LayerNormNet = ptq_fixtures.LayerNormNet
__main__.GroupNormNet = ptq_fixtures.GroupNormNet
__main__.InstanceNormNet = ptq_fixtures.InstanceNormNet
__main__.ConvTransposeNet = ptq_fixtures.ConvTransposeNet
__main__.PReLUNet = ptq_fixtures.PReLUNet
__main__.UpsampleNet = ptq_fixtures.UpsampleNet
__main__.UpsampleFormsNet = ptq_fixtures.UpsampleFormsNet
__main__.ConvTranspose1d3dNet = ptq_fixtures.ConvTranspose1d3dNet
torch.backends.quantized.engine = "onednn"
warnings.filterwarnings("ignore")


def dequant_input(model, x):
    seen = {}
    handle = model.dequant.register_forward_hook(lambda mod, i, o: seen.setdefault("y", i[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["y"]


def same(a, b):
    """Whether two state_dict values are equal bit for bit (quantized tensors: integers, qscheme and qparams)."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return a == b
    if a.is_quantized != b.is_quantized or a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_quantized:
        return torch.equal(a, b)
    if a.qscheme() != b.qscheme() or not torch.equal(a.int_repr(), b.int_repr()):
        return False
    if a.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return (torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales()) and
                torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()) and a.q_per_channel_axis() == b.q_per_channel_axis())
    return a.q_scale() == b.q_scale() and a.q_zero_point() == b.q_zero_point()


def main(float_model, qconfig, theirs, ours, inp, resaved, out):
    model = torch.load(float_model)
    model.qconfig = ptq_fixtures.CUSTOM[qconfig] if qconfig in ptq_fixtures.CUSTOM else tq.get_default_qconfig(qconfig)
    q = tq.convert(tq.prepare(model, inplace=False), inplace=False)
    x = torch.from_numpy(np.load(inp))
    q.load_state_dict(torch.load(theirs), strict=True)
    own = dequant_input(q, x)
    own_state = torch.load(theirs)
    our_state = torch.load(ours)
    result = q.load_state_dict(our_state, strict=True)
    y = dequant_input(q, x)
    torch.save(q.state_dict(), resaved)
    d = np.abs(y.int_repr().numpy().astype(np.int64) - own.int_repr().numpy().astype(np.int64))
    with open(out, "w") as f:
        json.dump({"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys),
                   "exact": float((d == 0).mean()), "worst": int(d.max()), "elements": int(d.size),
                   "keys": len(own_state), "keys_equal": sum(1 for k in own_state if k in our_state and same(own_state[k], our_state[k]))}, f)


if __name__ == "__main__":
    main(*sys.argv[1:8])
