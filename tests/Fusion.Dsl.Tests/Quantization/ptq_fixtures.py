"""Fixtures for the eager post-training quantization flow (PtqFlowTests.fs): small eager-mode models with QuantStub and
DeQuantStub (fused Conv+BN+ReLU, Linear(+ReLU), pooling, a residual block with FloatFunctional add_relu, add, mul and
cat, Conv1d and Conv3d networks, batch norms on their own, LeakyReLU, ELU, LayerNorm and GroupNorm, ConvTranspose1d/2d/3d, PReLU, upsampling on quantized tensors in every form) and torchvision's quantizable resnet18, each fused as its fuse_modules/fuse_model() does in eval mode, exported
with the repository's exporter (fusion_torch, the model format), then prepared with a named qconfig, calibrated on
seeded random batches, converted and run on a seeded input by PyTorch 1.13's onednn engine. Written beside OUT.json:
each case's model folder, its calibration batches and input (.npy, float32), and the integer output of every quantized
layer (.npy, the integers as float32); OUT.json lists every quantized layer's scale, zero point and weight qparams.

Usage: /usr/bin/python3 ptq_fixtures.py OUT.json"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.ao.quantization as tq
import torch.ao.nn.quantized as nnq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
from fusion_torch.model_file import export  # noqa: E402

torch.backends.quantized.engine = "onednn"


class ConvNet(nn.Module):
    """Fused Conv+BN+ReLU, Conv+BN, a separate ReLU, max and adaptive average pooling, flatten, Linear+ReLU, Linear."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(12)
        self.relu2 = nn.ReLU()
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(48, 16)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(16, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.pool(self.dw(x))
        x = torch.flatten(self.avg(x), 1)
        x = self.fc2(self.relu3(self.fc1(x)))
        return self.dequant(x)

    groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2"], ["fc1", "relu3"]]


class Residual(nn.Module):
    """A residual block with FloatFunctional add_relu, then add, mul and cat of two branches."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(8)
        self.stem_relu = nn.ReLU()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.add_relu = nnq.FloatFunctional()
        self.a = nn.Conv2d(8, 4, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.add = nnq.FloatFunctional()
        self.mul = nnq.FloatFunctional()
        self.cat = nnq.FloatFunctional()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.stem_relu(self.stem_bn(self.stem(x)))
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = self.add_relu.add_relu(y, x)
        a, b = self.a(x), self.b(x)
        s = self.add.add(a, b)
        p = self.mul.mul(a, b)
        x = self.cat.cat([s, p, a], 1)
        x = self.avg(x).reshape(x.size(0), -1)
        return self.dequant(self.fc(x))

    groups = [["stem", "stem_bn", "stem_relu"], ["conv1", "bn1", "relu1"], ["conv2", "bn2"]]


class ActNet(nn.Module):
    """ReLU6 and Hardswish, each observed and converted on its own (nnq.ReLU6 keeps its input's qparams, nnq.Hardswish
    has its own), after Conv+BN pairs."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu6 = nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.hswish = nn.Hardswish()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu6(self.bn1(self.conv1(x)))
        x = self.hswish(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avg(x), 1)
        return self.dequant(self.fc(x))

    groups = [["conv1", "bn1"], ["conv2", "bn2"]]


class Conv1dNet(nn.Module):
    """Conv1d: Conv+BN+ReLU (ConvReLU1d with the BatchNorm folded), a grouped, strided, dilated Conv+ReLU without bias,
    a depthwise Conv1d, then Linear."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv1d(3, 8, 5, padding=2)
        self.bn1 = nn.BatchNorm1d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(8, 8, 3, stride=2, padding=2, dilation=2, groups=4, bias=False)
        self.relu2 = nn.ReLU()
        self.dw = nn.Conv1d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8 * 12, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.dw(self.relu2(self.conv2(x)))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    groups = [["conv1", "bn1", "relu1"], ["conv2", "relu2"]]


class Conv3dNet(nn.Module):
    """Conv3d: Conv+BN+ReLU (ConvReLU3d), a grouped strided Conv3d, a 1x1x1 Conv+ReLU, then Linear."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(6)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv3d(6, 8, 3, stride=2, padding=1, groups=2)
        self.conv3 = nn.Conv3d(8, 4, 1)
        self.relu3 = nn.ReLU()
        self.fc = nn.Linear(4 * 3 * 4 * 4, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu3(self.conv3(self.conv2(x)))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    groups = [["conv1", "bn1", "relu1"], ["conv3", "relu3"]]


class BnNet(nn.Module):
    """Batch norms PyTorch quantizes on their own: a BatchNorm2d on the input, a BatchNorm2d+ReLU (BNReLU2d) after a
    convolution it is not fused into, then the same in 3-d (BatchNorm3d, BNReLU3d) on a view of the features."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.bn_in = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.bn3 = nn.BatchNorm3d(2)
        self.relu3 = nn.ReLU()
        self.bn3b = nn.BatchNorm3d(2, eps=1e-3)
        self.fc = nn.Linear(8 * 6 * 6, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu(self.bn(self.conv(self.bn_in(x))))
        x = self.bn3b(self.relu3(self.bn3(x.reshape(x.size(0), 2, 4, 6, 6))))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    groups = [["bn", "relu"], ["bn3", "relu3"]]


class LeakyEluNet(nn.Module):
    """LeakyReLU and ELU, each observed and converted on its own with its own output qparams, after convolutions; then
    the float nn.Sigmoid, which convert leaves in place and PyTorch runs on the quantized tensor."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.elu = nn.ELU(0.8)
        self.sig = nn.Sigmoid()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.sig(self.elu(self.conv2(self.lrelu(self.conv1(x)))))
        return self.dequant(self.fc(torch.flatten(self.avg(x), 1)))

    groups = []


class LayerNormNet(nn.Module):
    """LayerNorm over a convolution's [C, H, W] and, without elementwise affine, over a Linear's features."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.ln = nn.LayerNorm([6, 6, 6])
        self.fc1 = nn.Linear(6 * 6 * 6, 16)
        self.ln2 = nn.LayerNorm(16, elementwise_affine=False)
        self.fc2 = nn.Linear(16, 4)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.ln2(self.fc1(torch.flatten(self.ln(self.conv(x)), 1)))
        return self.dequant(self.fc2(x))


class GroupNormNet(nn.Module):
    """GroupNorm after a convolution (3 groups of 2 channels) and, without affine, one channel per group; then an
    affine InstanceNorm2d."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.gn = nn.GroupNorm(3, 6)
        self.conv2 = nn.Conv2d(6, 4, 3, stride=2, padding=1)
        self.gn2 = nn.GroupNorm(4, 4, affine=False)
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.fc = nn.Linear(4 * 4 * 4, 5)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.inorm(self.gn2(self.conv2(self.gn(self.conv(x)))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class InstanceNormNet(nn.Module):
    """InstanceNorm3d after a Conv3d, then on a view of its features as [N, C, L] an InstanceNorm1d and a GroupNorm of 2
    groups; the affine ones with random weights and biases (drawn from the case's seed), not the identity's."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.in3 = nn.InstanceNorm3d(4, affine=True)
        self.in1 = nn.InstanceNorm1d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4 * 4 * 6 * 6, 5)
        self.dequant = tq.DeQuantStub()
        with torch.no_grad():
            for norm in (self.in3, self.gn):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.normal_(0.0, 0.5)

    def forward(self, x):
        x = self.in3(self.conv(self.quant(x)))
        x = self.gn(self.in1(x.reshape(x.size(0), 4, -1)))
        return self.dequant(self.fc(torch.flatten(x, 1)))


class UpsampleNet(nn.Module):
    """A decoder's upsampling on quantized tensors: nn.Upsample (nearest, scale 2) after a convolution, F.interpolate
    (bilinear, by size) and nn.UpsamplingBilinear2d (align_corners) after the next ones, F.interpolate (nearest, scale
    1.5) last; the convolutions' channels-last outputs take PyTorch's NHWC kernels."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 12, 1)
        self.up3 = nn.UpsamplingBilinear2d(scale_factor=2)
        self.conv4 = nn.Conv2d(12, 4, 3, padding=1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.up1(self.relu1(self.conv1(x)))
        x = F.interpolate(self.conv2(x), size=(11, 13), mode="bilinear", align_corners=False)
        x = self.conv4(self.up3(self.conv3(x)))
        return self.dequant(F.interpolate(x, scale_factor=1.5, mode="nearest"))

    groups = [["conv1", "relu1"]]


class UpsampleFormsNet(nn.Module):
    """The upsampling forms UpsampleNet lacks: F.interpolate bilinear by scale factor on the QuantStub's contiguous
    output (PyTorch's NCHW kernel), nn.UpsamplingNearest2d by size after a convolution, F.interpolate bilinear by size
    with align_corners, nearest by size after a convolution, and bilinear with a recomputed scale factor."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.up1 = nn.UpsamplingNearest2d(size=(15, 17))
        self.conv2 = nn.Conv2d(8, 4, 1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = F.interpolate(self.quant(x), scale_factor=2, mode="bilinear", align_corners=False)
        x = F.interpolate(self.up1(self.conv1(x)), size=(19, 23), mode="bilinear", align_corners=True)
        x = F.interpolate(self.conv2(x), size=(21, 25), mode="nearest")
        return self.dequant(F.interpolate(x, scale_factor=1.3, mode="bilinear", recompute_scale_factor=True))


class ConvTransposeNet(nn.Module):
    """ConvTranspose2d as a decoder upsamples: a Conv+ReLU, a strided ConvTranspose2d (kernel 4, stride 2, padding 1)
    then a ReLU, a grouped, dilated ConvTranspose2d without bias. PyTorch 1.13 quantizes transposed convolutions with
    per-tensor weights only (qnnpack's qconfig)."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.up1 = nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.up2 = nn.ConvTranspose2d(6, 6, 3, padding=2, dilation=2, groups=3, bias=False)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.relu1(self.up1(self.relu(self.conv(x))))
        return self.dequant(self.up2(x))

    groups = [["conv", "relu"]]


class ConvTranspose1d3dNet(nn.Module):
    """ConvTranspose1d (strided, then grouped) on [N, C, L], then ConvTranspose3d (strided, then padded) on a view of
    its output as [N, 2, 2, L', 4]."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.up1 = nn.ConvTranspose1d(4, 8, 3, stride=2)
        self.up2 = nn.ConvTranspose1d(8, 16, 2, groups=2)
        self.up3 = nn.ConvTranspose3d(2, 4, 2, stride=2)
        self.up4 = nn.ConvTranspose3d(4, 3, 3, padding=1)
        self.dequant = tq.DeQuantStub()

    def forward(self, x):
        x = self.up2(self.up1(self.quant(x)))
        x = x.reshape(x.size(0), 2, 2, 4, x.size(2)).transpose(3, 4).contiguous()
        return self.dequant(self.up4(self.up3(x)))

    groups = []


class PReLUNet(nn.Module):
    """PReLU with one slope per channel after a convolution, and with one slope after a Linear; slopes set away from
    integers, which PyTorch 1.13's from_float rounds (its weight observer never sees them)."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.prelu = nn.PReLU(4)
        self.fc = nn.Linear(4 * 6 * 6, 8)
        self.prelu2 = nn.PReLU()
        self.dequant = tq.DeQuantStub()
        with torch.no_grad():
            self.prelu.weight.copy_(torch.tensor([0.25, -0.6, 1.4, 2.7]))
            self.prelu2.weight.fill_(0.2)

    def forward(self, x):
        x = self.quant(x)
        x = self.prelu(self.conv(x))
        return self.dequant(self.prelu2(self.fc(torch.flatten(x, 1))))

    groups = []


# Custom qconfigs (observer factories), by the name the test rebuilds them under. A moving average is not idempotent, so
# it shows that a fused module's observer sees each output twice, as PyTorch's Sequential-child observer does.
CUSTOM = {
    "custom_moving_average": tq.QConfig(activation=tq.MovingAverageMinMaxObserver.with_args(dtype=torch.quint8),
                                        weight=tq.default_per_channel_weight_observer),
}


def randomize_bn(model, gen):
    """Random BatchNorm statistics, so that folding them into the convolutions changes the weights."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) * 1.5 + 0.25
            m.bias.data = torch.randn(n, generator=gen) * 0.5
            m.running_mean = torch.randn(n, generator=gen) * 0.5
            m.running_var = torch.rand(n, generator=gen) * 1.5 + 0.25


def save(folder, name, array):
    path = os.path.join(folder, name)
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))
    return os.path.relpath(path, ROOT)


def case(name, build, qconfig, shape, batches, fuse, seed, nudges=0, groups=None):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build()
    randomize_bn(model, gen)
    model.eval()
    folder = os.path.join(ROOT, name.replace("/", "_"))
    os.makedirs(folder, exist_ok=True)
    if groups is not None:
        # The unfused model too, with fuse_modules' groups, so that the test can fuse it itself first.
        export(model, os.path.join(folder, "unfused"), input_shape=list(shape))
    model = fuse(model)
    export(model, folder, input_shape=list(shape))
    rng = np.random.default_rng(seed)
    data = [rng.normal(0.0, 1.0, size=shape).astype(np.float32) for _ in range(batches)]
    x = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    # The fused float model (a converted model does not survive pickling in torch 1.13: its modules' __setstate__
    # drops the hook dicts), from which quantized_state_dict_check.py builds PyTorch's converted model again.
    torch.save(model, os.path.join(folder, "float_model.pt"))
    model.qconfig = CUSTOM[qconfig] if qconfig in CUSTOM else tq.get_default_qconfig(qconfig)
    prepared = tq.prepare(model, inplace=False)
    # What each observer sees, batch by batch: PyTorch's own float activations, saved so that the flow can be checked
    # apart from the float engine that computes them.
    seen = {}
    for path, m in prepared.named_modules():
        if path.endswith(".activation_post_process"):
            owner = path[:-len(".activation_post_process")]
            m.register_forward_pre_hook(lambda mod, i, p=owner: seen.setdefault(p, []).append(i[0].detach().numpy().copy()))
    with torch.no_grad():
        for d in data:
            prepared(torch.from_numpy(d))
    q = tq.convert(prepared, inplace=False)
    # The converted model's state_dict as PyTorch saves it, for QuantizedStateDictTests.
    torch.save(q.state_dict(), os.path.join(folder, "q_state_dict.pt"))
    layers, outputs = instrument(q)
    with torch.no_grad():
        y = q(torch.from_numpy(x))
    result = {"name": name, "qconfig": qconfig, "model": os.path.relpath(folder, ROOT),
            "batches": [save(folder, f"batch{i}.npy", d) for i, d in enumerate(data)],
            "input": save(folder, "input.npy", x), "output": save(folder, "output.npy", y.numpy()),
            "state_dict": os.path.relpath(os.path.join(folder, "q_state_dict.pt"), ROOT),
            "float_model": os.path.relpath(os.path.join(folder, "float_model.pt"), ROOT),
            "unfused": None if groups is None else {"model": os.path.relpath(os.path.join(folder, "unfused"), ROOT), "groups": groups},
            "layers": layers,
            "activations": {p: [save(folder, f"act_{p.replace('.', '_')}_{i}.npy", a) for i, a in enumerate(arrays)]
                            for p, arrays in seen.items()},
            "layer_outputs": layer_outputs(folder, outputs)}
    if nudges:
        result["nudged"] = nudged(q, torch.from_numpy(x), outputs["dequant"], nudges)
    return result


def instrument(q):
    """The converted model's quantized layers (path, type, scale, zero point, weight qparams) and a dict that its next
    forward fills with each layer's quantized output (a DeQuantize's input), through hooks on the modules."""
    outputs = {}

    def record(path, y):
        outputs[path] = y
        return y

    def hook(path, of_input=False):
        """A forward hook that records a module's output (or input) and returns None, leaving the output as it is."""
        def run(mod, i, o):
            outputs[path] = i[0] if of_input else o
        return run

    layers = []
    for path, m in q.named_modules():
        if isinstance(m, nnq.QFunctional):
            for op in ("add", "add_relu", "mul", "cat"):
                setattr(m, op, (lambda orig, p: lambda *a, **k: record(p, orig(*a, **k)))(getattr(m, op), path))
            layers.append({"path": path, "type": "QFunctional", "scale": m.scale, "zero_point": m.zero_point})
        elif isinstance(m, nnq.Quantize):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "Quantize", "scale": float(m.scale), "zero_point": int(m.zero_point)})
        elif isinstance(m, nnq.ReLU6):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "QuantizedReLU6"})
        elif isinstance(m, nnq.Hardswish):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "QuantizedHardswish", "scale": float(m.scale), "zero_point": int(m.zero_point)})
        elif isinstance(m, (nnq.BatchNorm2d, nnq.BatchNorm3d)):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "Quantized" + type(m).__name__, "scale": float(m.scale), "zero_point": int(m.zero_point)})
        elif isinstance(m, nnq.PReLU):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "QuantizedPReLU", "scale": float(m.scale), "zero_point": int(m.zero_point),
                           "weight_scales": [float(m.weight.q_scale())], "weight_zero_points": [int(m.weight.q_zero_point())]})
        elif isinstance(m, (nnq.LeakyReLU, nnq.ELU, nnq.LayerNorm, nnq.GroupNorm, nnq.InstanceNorm1d, nnq.InstanceNorm2d, nnq.InstanceNorm3d)):
            m.register_forward_hook(hook(path))
            layers.append({"path": path, "type": "Quantized" + type(m).__name__, "scale": float(m.scale), "zero_point": int(m.zero_point)})
        elif isinstance(m, nnq.DeQuantize):
            m.register_forward_hook(hook(path, of_input=True))
            layers.append({"path": path, "type": "DeQuantize"})
        elif isinstance(m, (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d, nnq.Linear, nnq.ConvTranspose1d, nnq.ConvTranspose2d, nnq.ConvTranspose3d)):
            m.register_forward_hook(hook(path))
            w = m.weight()
            per_channel = w.qscheme() in (torch.per_channel_symmetric, torch.per_channel_affine)
            layers.append({"path": path, "type": "Quantized" + type(m).__name__, "scale": m.scale, "zero_point": m.zero_point,
                           "weight_scales": [float(s) for s in (w.q_per_channel_scales() if per_channel else [w.q_scale()])],
                           "weight_zero_points": [int(z) for z in (w.q_per_channel_zero_points() if per_channel else [w.q_zero_point()])]})
    return layers, outputs


def layer_outputs(folder, outputs):
    """The recorded quantized outputs as fixture entries: each one's integers (.npy, as float32), scale and zero point."""
    return {p: {"file": save(folder, f"out_{p.replace('.', '_') or 'root'}.npy", t.int_repr().numpy()),
                "scale": float(t.q_scale()), "zero_point": int(t.q_zero_point())}
            for p, t in outputs.items()}


def nudged(q, x, reference, patterns):
    """PyTorch's own sensitivity to the last bit of its scales: the int8 output (the DeQuantStub's input) after every
    Conv/Linear/QFunctional output scale is moved by one float32 ulp up or down (seeded patterns), as a float engine's
    last bits move a calibrated scale. For each pattern, the fraction of output integers still equal and the largest
    difference in steps."""
    import copy
    results = []
    for seed in range(patterns):
        rs = np.random.default_rng(seed)
        moved = copy.deepcopy(q)
        for m in moved.modules():
            if isinstance(m, (nnq.Conv2d, nnq.Linear, nnq.QFunctional)):
                s = np.float32(m.scale)
                m.scale = float(np.nextafter(s, np.float32(np.inf) if rs.integers(0, 2) else np.float32(0)))
        seen = {}
        moved.dequant.register_forward_hook(lambda mod, i, o: seen.setdefault("y", i[0]))
        with torch.no_grad():
            moved(x)
        d = np.abs(seen["y"].int_repr().numpy().astype(np.int64) - reference.int_repr().numpy().astype(np.int64))
        results.append({"exact": float((d == 0).mean()), "worst": int(d.max())})
    return results


def fuse_groups(groups):
    return lambda m: tq.fuse_modules(m, groups)


def resnet18():
    from torchvision.models.quantization import resnet18 as build
    return build(weights=None, quantize=False)


def fuse_resnet(m):
    m.fuse_model()
    return m


def main(out):
    global ROOT
    ROOT = os.path.dirname(os.path.abspath(out))
    cases = []
    for i, qc in enumerate(("x86", "fbgemm", "onednn", "qnnpack")):
        cases.append(case(f"convnet/{qc}", ConvNet, qc, (2, 3, 16, 16), 4, fuse_groups(ConvNet.groups), 10 + i, groups=ConvNet.groups))
        cases.append(case(f"residual/{qc}", Residual, qc, (2, 3, 12, 12), 4, fuse_groups(Residual.groups), 20 + i, groups=Residual.groups))
    for i, qc in enumerate(CUSTOM):
        cases.append(case(f"convnet/{qc}", ConvNet, qc, (2, 3, 16, 16), 4, fuse_groups(ConvNet.groups), 40 + i, groups=ConvNet.groups))
        cases.append(case(f"residual/{qc}", Residual, qc, (2, 3, 12, 12), 4, fuse_groups(Residual.groups), 50 + i, groups=Residual.groups))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"actnet/{qc}", ActNet, qc, (2, 3, 12, 12), 4, fuse_groups(ActNet.groups), 70 + i, groups=ActNet.groups))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"conv1dnet/{qc}", Conv1dNet, qc, (2, 3, 24), 4, fuse_groups(Conv1dNet.groups), 80 + i, groups=Conv1dNet.groups))
        cases.append(case(f"conv3dnet/{qc}", Conv3dNet, qc, (2, 3, 6, 8, 8), 4, fuse_groups(Conv3dNet.groups), 90 + i, groups=Conv3dNet.groups))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"bnnet/{qc}", BnNet, qc, (2, 3, 6, 6), 4, fuse_groups(BnNet.groups), 100 + i, groups=BnNet.groups))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"leakyelunet/{qc}", LeakyEluNet, qc, (2, 3, 10, 10), 4, lambda m: m, 110 + i))
        cases.append(case(f"layernormnet/{qc}", LayerNormNet, qc, (2, 3, 6, 6), 4, lambda m: m, 120 + i))
        cases.append(case(f"groupnormnet/{qc}", GroupNormNet, qc, (2, 3, 8, 8), 4, lambda m: m, 130 + i))
        cases.append(case(f"instancenormnet/{qc}", InstanceNormNet, qc, (2, 3, 4, 6, 6), 4, lambda m: m, 140 + i))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"prelunet/{qc}", PReLUNet, qc, (2, 3, 6, 6), 4, lambda m: m, 150 + i))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"upsamplenet/{qc}", UpsampleNet, qc, (2, 3, 5, 6), 4, fuse_groups(UpsampleNet.groups), 160 + i,
                          groups=UpsampleNet.groups))
    for i, qc in enumerate(("x86", "qnnpack")):
        cases.append(case(f"upsampleformsnet/{qc}", UpsampleFormsNet, qc, (2, 3, 5, 6), 4, lambda m: m, 180 + i))
    cases.append(case("convtransposenet/qnnpack", ConvTransposeNet, "qnnpack", (2, 3, 6, 6), 4, fuse_groups(ConvTransposeNet.groups), 170,
                      groups=ConvTransposeNet.groups))
    cases.append(case("convtranspose1d3dnet/qnnpack", ConvTranspose1d3dNet, "qnnpack", (2, 4, 5), 4, lambda m: m, 171))
    if len(sys.argv) < 3 or sys.argv[2] != "--small":
        cases.append(case("resnet18/x86", resnet18, "x86", (2, 3, 64, 64), 3, fuse_resnet, 30, nudges=5))
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "engine": torch.backends.quantized.engine, "cases": cases}, f)
    print(f"{len(cases)} cases")


ROOT = "."
if __name__ == "__main__":
    main(sys.argv[1])
