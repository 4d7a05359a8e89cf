"""Loads a QAT state_dict written by Fusion.Dsl (QatStateDict.Save) into PyTorch 1.13's own QAT model of a
qat_fixtures.py case — the same builder and seed, fuse_modules_qat, prepare_qat with the case's qconfig — with
load_state_dict(strict=True), then runs it in eval mode on INPUT.npy and writes the output to OUT.npy, for QatTests.fs.
Exits non-zero with PyTorch's message when the file does not load.

Usage: /usr/bin/python3 qat_state_dict_check.py BUILDER SEED QCONFIG STATE.pt INPUT.npy OUT.npy"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qat_fixtures  # noqa: E402


def main(builder, seed, qconfig, state, inp, out):
    build = qat_fixtures.BUILDERS[builder]
    qat = qat_fixtures.prepare(qat_fixtures.float_model(build, int(seed)), build, qconfig)
    qat.load_state_dict(torch.load(state), strict=True)
    with torch.no_grad():
        y = qat.eval()(torch.from_numpy(np.load(inp)))
    np.save(out, y.numpy())


if __name__ == "__main__":
    main(*sys.argv[1:])
