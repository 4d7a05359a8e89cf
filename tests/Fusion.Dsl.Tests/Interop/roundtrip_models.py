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


class Gated(nn.Module):
    """nn.GLU, a layer kind Fusion.Dsl defines by graph operations alone: the channels of a fused block halved, then the
    features of a Linear."""

    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 8)
        self.gate = nn.GLU(dim=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 6)
        self.out = nn.GLU()

    def forward(self, x):
        x = self.pool(self.gate(self.stem(x))).flatten(1)
        return self.out(self.fc(x))


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


class OpaqueNet(nn.Module):
    """Modules and operations Fusion.Dsl carries without modelling them: a LayerNorm with weights, a GELU with an
    argument, torch.sigmoid, permute, and an index with slices and Ellipsis (which the engine computes as carried
    modules and graph operations), and torch.roll and nn.Softsign, which it does not; fusable groups around them."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.norm = nn.LayerNorm(4, eps=1e-3)
        self.act = nn.GELU(approximate="tanh")
        self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        self.squash = nn.Softsign()

    def forward(self, x):
        x = self.stem(x)
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.act(self.head(x))
        return self.squash(torch.roll(torch.sigmoid(x[:, :2, ..., ::1]), 1, -1))


def opaque_net():
    """OpaqueNet with random BatchNorm statistics and LayerNorm weights, so every folded parameter matters."""
    torch.manual_seed(3)
    m = OpaqueNet()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.LayerNorm)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()



class ChannelShuffle(nn.Module):
    """shufflenet's channel shuffle as torchvision writes it: the shape unpacked from x.size() (which torch 1.13's
    tracer cannot unpack under Python 3.11 on its own)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        x = self.bn(self.conv(x))
        n, c, h, w = x.size()
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)


def tiny_vit():
    """torchvision's VisionTransformer in small (32x32 images, 8x8 patches, 2 layers of 3 heads): its class token,
    shape checks, MultiheadAttention and GELU as vit_b_16 has them. The head, which torchvision zeroes, is random, so
    the output depends on every layer."""
    import torchvision
    torch.manual_seed(5)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=48,
                                             mlp_dim=96, num_classes=10)
    with torch.no_grad():
        m.heads.head.weight.uniform_(-0.2, 0.2)
        m.heads.head.bias.uniform_(-0.1, 0.1)
        m.class_token.uniform_(-1, 1)
    return m.eval()


def tiny_maxvit():
    """torchvision's MaxVit in small (32x32 images, two stages of one layer, partitions of 2): its relative position
    index, which torch.fx records as tensor constants (_tensor_constantN) outside the state_dict, the einsum products
    of its attention, torch.swapaxes, SiLU/Sigmoid squeeze-excitation, LayerNorm, GELU and the Tanh of its head.
    BatchNorm statistics are random, so Conv+BN folding changes the weights."""
    import torchvision
    torch.manual_seed(6)
    m = torchvision.models.MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16],
                                  block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0, num_classes=10)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    return m.eval()
