"""The networks of the breadth table, as a factory the exporter can call and `fusion_torch verify` can call again:
torchvision's classification models with random weights and random BatchNorm statistics (so that folding them
changes every channel), in eval mode, from a fixed seed."""
import torch
import torchvision

# torchvision 0.14's classification builders, by name (detection, segmentation, video and optical-flow models left out).
NAMES = sorted(torchvision.models.list_models(module=torchvision.models))


def build(name, seed=0):
    """torchvision.models.NAME(weights=None) with randomized BatchNorm statistics, in eval mode."""
    if name not in NAMES:
        raise ValueError(f"unknown classification network {name!r}")
    torch.manual_seed(seed)
    kwargs = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # scipy's truncated normal takes minutes; the values do not matter here
    model = torchvision.models.get_model(name, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            # vit's head starts at zero: every output would be 0 and any engine would "match" PyTorch.
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()
