"""Fixtures for quantization-aware training (QatTests.fs), from PyTorch 1.13:

* fake_quant: PyTorch's default QAT fake-quantize modules (get_default_qat_qconfig(backend)'s activation and weight
  factories, FusedMovingAvgObsFakeQuantize) and plain FakeQuantize modules, each called on a few seeded tensors with the
  observer and fake quantization switched on and off; after each call the output, scale, zero point and the observer's
  running min and max.
* models: ptq_fixtures.py's small eager models (Conv+BN+ReLU, Conv+BN, Conv, Linear+ReLU, Linear; a residual block
  with FloatFunctional add_relu, add, mul and cat; ReLU6 and Hardswish) and a Conv+ReLU one, exported unfused in training mode with the repository's exporter, then fuse_modules_qat, prepare_qat with a backend's
  default QAT qconfig, a few training-mode forwards under no_grad (no optimizer step: the observers and BatchNorm running
  statistics advance), the state_dict saved with torch.save, an eval-mode forward, and convert(qat_model.eval()) run on
  the onednn engine with every quantized layer's integer output and its state_dict.

Usage: /usr/bin/python3 qat_fixtures.py OUT.json"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.ao.quantization as tq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "python"))
import ptq_fixtures as ptq  # noqa: E402
from fusion_torch.model_file import export  # noqa: E402

torch.backends.quantized.engine = "onednn"

# Flags (observer_enabled, fake_quant_enabled) for each call of a fake-quantize case.
FLAGS = [(1, 1), (1, 1), (0, 1), (1, 0), (1, 1)]


def fake_quant_modules():
    """(name, module factory, tensor shape) of every fake-quantize case."""
    cases = []
    for backend in ("x86", "qnnpack"):
        qc = tq.get_default_qat_qconfig(backend)
        cases.append((f"{backend}/activation", qc.activation, (2, 3, 5, 5)))
        cases.append((f"{backend}/weight", qc.weight, (4, 3, 3, 3)))
    cases.append(("plain/activation", lambda: tq.FakeQuantize(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255), (2, 3, 5, 5)))
    cases.append(("plain/weight", tq.default_per_channel_weight_fake_quant, (4, 3, 3, 3)))
    return cases


def fake_quant_case(name, make, shape, seed):
    folder = os.path.join(ptq.ROOT, "fq_" + name.replace("/", "_"))
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    fq = make()
    steps = []
    for i, (obs, on) in enumerate(FLAGS):
        # Different spreads and offsets, so that the moving averages move and the zero points differ.
        x = (rng.normal(0.3 * i - 0.2, 0.5 + 0.4 * i, size=shape)).astype(np.float32)
        fq.enable_observer(bool(obs))
        fq.enable_fake_quant(bool(on))
        y = fq(torch.from_numpy(x))
        o = fq.activation_post_process
        steps.append({"observer": obs, "fake_quant": on, "input": ptq.save(folder, f"x{i}.npy", x),
                      "output": ptq.save(folder, f"y{i}.npy", y.numpy()),
                      "scale": [float(v) for v in fq.scale.flatten()], "zero_point": [int(v) for v in fq.zero_point.flatten()],
                      "min_val": [float(v) for v in o.min_val.flatten()], "max_val": [float(v) for v in o.max_val.flatten()],
                      "qparams_scale": [float(v) for v in fq.calculate_qparams()[0].flatten()],
                      "qparams_zero_point": [int(v) for v in fq.calculate_qparams()[1].flatten()]})
    return {"name": name, "fused": isinstance(fq, tq.FusedMovingAvgObsFakeQuantize), "steps": steps}


class ConvReLUNet(torch.nn.Module):
    """The QAT ConvReLU2d (Conv+ReLU fused without a BatchNorm), then a strided Conv2d and a Linear."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.down = torch.nn.Conv2d(6, 4, 2, stride=2)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.down(self.relu(self.conv(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    groups = [["conv", "relu"]]


def float_model(build, seed):
    """The case's float model in training mode: seeded weights, random BatchNorm statistics."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build()
    ptq.randomize_bn(model, gen)
    return model.train()


def prepare(model, build, qconfig):
    """fuse_modules_qat with the builder's groups, then prepare_qat with the backend's default QAT qconfig."""
    fused = tq.fuse_modules_qat(model, build.groups)
    fused.qconfig = tq.get_default_qat_qconfig(qconfig)
    return tq.prepare_qat(fused)


def model_case(name, build, qconfig, shape, steps, seed):
    model = float_model(build, seed)
    folder = os.path.join(ptq.ROOT, name.replace("/", "_"))
    os.makedirs(folder, exist_ok=True)
    export(model, os.path.join(folder, "unfused"), input_shape=list(shape))
    qat = prepare(model, build, qconfig)
    rng = np.random.default_rng(seed)
    batches = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(steps)]
    x = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    with torch.no_grad():
        train_out = [qat(torch.from_numpy(b)).numpy() for b in batches]
    torch.save(qat.state_dict(), os.path.join(folder, "qat_state_dict.pt"))
    # Eval mode on a copy: the fake-quantize modules still observe in eval mode, so the saved state stays the one above.
    evaluated = copy.deepcopy(qat).eval()
    with torch.no_grad():
        eval_out = evaluated(torch.from_numpy(x)).numpy()
    q = tq.convert(copy.deepcopy(qat).eval())
    torch.save(q.state_dict(), os.path.join(folder, "q_state_dict.pt"))
    layers, outputs = ptq.instrument(q)
    with torch.no_grad():
        y = q(torch.from_numpy(x))
    return {"name": name, "qconfig": qconfig, "builder": build.__name__, "seed": seed, "unfused": os.path.relpath(os.path.join(folder, "unfused"), ptq.ROOT),
            "groups": build.groups,
            "batches": [ptq.save(folder, f"batch{i}.npy", b) for i, b in enumerate(batches)],
            "train_outputs": [ptq.save(folder, f"train_out{i}.npy", o) for i, o in enumerate(train_out)],
            "state_dict": os.path.relpath(os.path.join(folder, "qat_state_dict.pt"), ptq.ROOT),
            "converted_state_dict": os.path.relpath(os.path.join(folder, "q_state_dict.pt"), ptq.ROOT),
            "input": ptq.save(folder, "input.npy", x), "eval_output": ptq.save(folder, "eval_out.npy", eval_out),
            "output": ptq.save(folder, "output.npy", y.numpy()),
            "layers": layers, "layer_outputs": ptq.layer_outputs(folder, outputs)}


BUILDERS = {b.__name__: b for b in (ptq.ConvNet, ptq.Residual, ptq.ActNet, ConvReLUNet)}


def main(out):
    ptq.ROOT = os.path.dirname(os.path.abspath(out))
    fake = [fake_quant_case(n, make, shape, 100 + i) for i, (n, make, shape) in enumerate(fake_quant_modules())]
    models = []
    # PtqFlowTests' models: Conv+BN+ReLU, Conv+BN, a depthwise Conv, Linear+ReLU and Linear; a residual block with
    # FloatFunctional add_relu, add, mul and cat.
    for i, qc in enumerate(("x86", "qnnpack")):
        models.append(model_case(f"convnet/{qc}", ptq.ConvNet, qc, (4, 3, 12, 12), 3, 200 + i))
        models.append(model_case(f"residual/{qc}", ptq.Residual, qc, (4, 3, 10, 10), 3, 210 + i))
        models.append(model_case(f"convrelu/{qc}", ConvReLUNet, qc, (4, 3, 8, 8), 3, 220 + i))
    # ReLU6 and Hardswish, each with its own activation fake-quantize module, after Conv+BN pairs.
    models.append(model_case("actnet/x86", ptq.ActNet, "x86", (4, 3, 12, 12), 3, 230))
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "engine": torch.backends.quantized.engine, "fake_quant": fake, "cases": models}, f)
    print(f"{len(fake)} fake-quantize cases, {len(models)} QAT models")


if __name__ == "__main__":
    main(sys.argv[1])
