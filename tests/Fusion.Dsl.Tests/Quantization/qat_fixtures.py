"""Fixtures for quantization-aware training (QatTests.fs), from PyTorch 1.13:

* fake_quant: PyTorch's default QAT fake-quantize modules (get_default_qat_qconfig(backend)'s activation and weight
  factories, FusedMovingAvgObsFakeQuantize) and plain FakeQuantize modules, each called on a few seeded tensors with the
  observer and fake quantization switched on and off; after each call the output, scale, zero point and the observer's
  running min and max.
* models: ptq_fixtures.py's small eager models (Conv+BN+ReLU, Conv+BN, Conv, Linear+ReLU, Linear; a residual block
  with FloatFunctional add_relu, add, mul and cat; ReLU6 and Hardswish) and a Conv+ReLU one, exported unfused in training mode with the repository's exporter, then fuse_modules_qat, prepare_qat with a backend's
  default QAT qconfig, a few training-mode forwards under no_grad (no optimizer step: the observers and BatchNorm running
  statistics advance), the state_dict saved with torch.save after each of them and at the end, an eval-mode forward, and convert(qat_model.eval()) run on
  the onednn engine with every quantized layer's integer output and its state_dict.
* the same for 1-d and 3-d networks (ConvBn/ConvBnReLU/ConvReLU/Conv in 1-d and 3-d, LinearBn1d), and for two cases
  whose Conv+BN modules get freeze_bn_stats (model.apply) before the third of four training forwards.

Usage: /usr/bin/python3 qat_fixtures.py OUT.json"""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn.intrinsic.qat as nniqat
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


class ConvQatNet(torch.nn.Module):
    """QAT modules of one convolution rank: ConvBnReLU, a strided ConvBn without a bias, a 1x1 Conv+ReLU and a Conv;
    then LinearBn1d and a Linear."""

    def __init__(self, rank, conv2, conv4, fc_in, fc_out, fc_bias):
        super().__init__()
        conv, bn = getattr(torch.nn, f"Conv{rank}d"), getattr(torch.nn, f"BatchNorm{rank}d")
        self.quant = tq.QuantStub()
        self.conv1 = conv(3, 6, 3, padding=1)
        self.bn1 = bn(6)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = conv(6, 6, bias=False, **conv2)
        self.bn2 = bn(6)
        self.conv3 = conv(6, 4, 1)
        self.relu3 = torch.nn.ReLU()
        self.conv4 = conv(4, 4, **conv4)
        self.fc1 = torch.nn.Linear(fc_in, fc_out, bias=fc_bias)
        self.bn_fc = torch.nn.BatchNorm1d(fc_out)
        self.fc2 = torch.nn.Linear(fc_out, 3)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.conv4(self.relu3(self.conv3(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(self.quant(x)))))))))
        return self.dequant(self.fc2(self.bn_fc(self.fc1(torch.flatten(x, 1)))))

    groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["conv3", "relu3"], ["fc1", "bn_fc"]]


class Conv1dQatNet(ConvQatNet):
    """In 1-d the Conv+ReLU and the Conv are left float by prepare_qat (DEFAULT_QAT_MODULE_MAPPINGS has no nn.Conv1d or
    nni.ConvReLU1d): only their outputs are fake-quantized (the ConvReLU1d's twice, being a Sequential with the
    fake-quantize module as its last child and its forward hook), and convert quantizes their weights with a fresh
    qconfig.weight(). Input [N, 3, 16]."""

    def __init__(self):
        super().__init__(1, dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=1), 4 * 8, 8, True)


class Conv3dQatNet(ConvQatNet):
    """In 3-d every module is swapped (ConvBnReLU3d, ConvBn3d, ConvReLU3d, Conv3d); LinearBn1d without a bias. The
    strided ConvBn3d has a 2x2x2 kernel: with 3x3x3 (108-term sums) the float convolutions' last-bit differences from
    PyTorch's moved the later fake-quantize scales 5-6 ulps, beyond QatTests' stateScaleUlps (measured on the 2-d
    models' sums of up to 72 terms). Input [N, 3, 8, 8, 8]."""

    def __init__(self):
        super().__init__(3, dict(kernel_size=2, stride=2), dict(kernel_size=2, stride=2), 4 * 2 * 2 * 2, 5, False)


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


def model_case(name, build, qconfig, shape, steps, seed, freeze_at=None):
    model = float_model(build, seed)
    folder = os.path.join(ptq.ROOT, name.replace("/", "_"))
    os.makedirs(folder, exist_ok=True)
    export(model, os.path.join(folder, "unfused"), input_shape=list(shape))
    qat = prepare(model, build, qconfig)
    rng = np.random.default_rng(seed)
    batches = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(steps)]
    x = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    train_out = []
    with torch.no_grad():
        for i, b in enumerate(batches):
            if i == freeze_at:
                # PyTorch's recipe late in QAT: the Conv+BN modules stop updating their BatchNorm statistics (the
                # function's type set leaves LinearBn1d updating).
                qat.apply(nniqat.freeze_bn_stats)
            train_out.append(qat(torch.from_numpy(b)).numpy())
            torch.save(qat.state_dict(), os.path.join(folder, f"qat_state_dict_step{i}.pt"))
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
    return {"name": name, "qconfig": qconfig, "builder": build.__name__, "seed": seed, "freeze_at": freeze_at, "unfused": os.path.relpath(os.path.join(folder, "unfused"), ptq.ROOT),
            "groups": build.groups,
            "batches": [ptq.save(folder, f"batch{i}.npy", b) for i, b in enumerate(batches)],
            "train_outputs": [ptq.save(folder, f"train_out{i}.npy", o) for i, o in enumerate(train_out)],
            "state_dict": os.path.relpath(os.path.join(folder, "qat_state_dict.pt"), ptq.ROOT),
            "step_state_dicts": [os.path.relpath(os.path.join(folder, f"qat_state_dict_step{i}.pt"), ptq.ROOT) for i in range(steps)],
            "converted_state_dict": os.path.relpath(os.path.join(folder, "q_state_dict.pt"), ptq.ROOT),
            "input": ptq.save(folder, "input.npy", x), "eval_output": ptq.save(folder, "eval_out.npy", eval_out),
            "output": ptq.save(folder, "output.npy", y.numpy()),
            "layers": layers, "layer_outputs": ptq.layer_outputs(folder, outputs)}


BUILDERS = {b.__name__: b for b in (ptq.ConvNet, ptq.Residual, ptq.ActNet, ConvReLUNet, Conv1dQatNet, Conv3dQatNet)}


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
    # 1-d and 3-d convolutions (ConvBn, ConvBnReLU, ConvReLU, Conv) and LinearBn1d, with both backends.
    for i, qc in enumerate(("x86", "qnnpack")):
        models.append(model_case(f"conv1d/{qc}", Conv1dQatNet, qc, (4, 3, 16), 3, 240 + i))
        models.append(model_case(f"conv3d/{qc}", Conv3dQatNet, qc, (4, 3, 8, 8, 8), 3, 250 + i))
    # freeze_bn_stats applied before the third of four training forwards.
    models.append(model_case("conv1d_frozen/x86", Conv1dQatNet, "x86", (4, 3, 16), 4, 260, freeze_at=2))
    models.append(model_case("convnet_frozen/qnnpack", ptq.ConvNet, "qnnpack", (4, 3, 12, 12), 4, 261, freeze_at=2))
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "engine": torch.backends.quantized.engine, "fake_quant": fake, "cases": models}, f)
    print(f"{len(fake)} fake-quantize cases, {len(models)} QAT models")


if __name__ == "__main__":
    main(sys.argv[1])
