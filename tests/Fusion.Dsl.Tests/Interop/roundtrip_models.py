"""Small user models for the PyTorch round-trip tests (TorchRoundTripTests.fs): the containers and forward styles
users write. Each factory takes no arguments; weights come from torch.manual_seed."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def _cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Inner(nn.Module):
    """A user block whose activation is the function F.relu (not a module)."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Outer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.inner = Inner(c)
        self.proj = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c))

    def forward(self, x):
        return self.proj(self.inner(x)) + x


class Nested(nn.Module):
    """Nested user modules with a residual add, torch.cat, flatten and tensor methods."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 8)
        self.body = Outer(8)
        self.side = nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)
        self.fc_relu = nn.ReLU()

    def forward(self, x):
        x = self.stem(x)
        y = self.body(x)
        z = torch.cat([y, self.side(x)], dim=1)
        z = self.pool(z).flatten(1).contiguous()
        return self.fc_relu(self.fc(z)).unsqueeze(0).squeeze(0)


class Reused(nn.Module):
    """One ReLU module called at two places (only the conv-bn pairs are fused)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(x)))


class Buffers(nn.Module):
    """A user module with its own parameter and buffer, read by the graph (get_attr)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.register_buffer("scale", torch.linspace(0.5, 2.0, 4).reshape(1, 4, 1, 1))
        self.shift = nn.Parameter(torch.randn(1, 4, 1, 1))

    def forward(self, x):
        return self.bn(self.conv(x)) * self.scale + self.shift


class ListIterated(nn.Module):
    """A ModuleList of conv-bn-relu blocks run in a loop."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_cbr(3, 6), _cbr(6, 6), _cbr(6, 4)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class ListIndexed(nn.Module):
    """A ModuleList of single layers used by index, out of order."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 5, 1)])

    def forward(self, x):
        x = self.layers[2](self.layers[1](self.layers[0](x)))
        return self.layers[3](x) + x


class Dict(nn.Module):
    """A ModuleDict indexed by key and iterated over its values."""

    def __init__(self):
        super().__init__()
        self.stem = nn.ModuleDict({"conv": nn.Conv2d(3, 4, 3, padding=1), "bn": nn.BatchNorm2d(4), "act": nn.ReLU()})
        self.heads = nn.ModuleDict({"a": nn.Conv2d(4, 4, 1), "b": nn.Conv2d(4, 4, 3, padding=1)})

    def forward(self, x):
        x = self.stem["act"](self.stem["bn"](self.stem["conv"](x)))
        out = x
        for h in self.heads.values():
            out = out + h(x)
        return out


class QatNet(nn.Module):
    """For fuse_modules_qat: conv-bn-relu, conv-bn and linear-relu in training mode."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.fc, self.relu2 = nn.Linear(6, 4), nn.ReLU()

    def forward(self, x):
        x = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.relu2(self.fc(x))


def sequential_root():
    """A plain Sequential root: no graph, its children run in order."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3), nn.ReLU())


# ---- models the exporter must refuse ----------------------------------------------------------------------------

class UnknownLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())

    def forward(self, x):
        return self.body(x)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = Gate()

    def forward(self, x):
        return self.gate(x)


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return self.conv(-x)


class UnsupportedFunction(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))
