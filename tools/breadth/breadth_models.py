"""The networks of the breadth table, as a factory the exporter can call and `fusion_torch verify` can call again:
torchvision's classification models with random weights and random BatchNorm statistics (so that folding them
changes every channel), in eval mode, from a fixed seed."""
import torch
import torchvision

# torchvision 0.14's classification builders, by name (detection, segmentation, video and optical-flow models left out),
# then the float versions of torchvision.models.quantization (quantized_resnet18 built with quantize=False).
QUANTIZABLE = sorted(torchvision.models.list_models(module=torchvision.models.quantization))
NAMES = sorted(torchvision.models.list_models(module=torchvision.models)) + QUANTIZABLE


def build(name, seed=0):
    """torchvision.models.NAME(weights=None) with randomized BatchNorm statistics, in eval mode."""
    if name not in NAMES:
        raise ValueError(f"unknown classification network {name!r}")
    torch.manual_seed(seed)
    kwargs = {"weights": None}
    if name in QUANTIZABLE:
        kwargs["quantize"] = False
    if name in ("googlenet", "inception_v3", "quantized_googlenet", "quantized_inception_v3"):
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


def fuse_model_groups(name):
    """The groups a quantizable network's own fuse_model() fuses, as dotted paths from the root: fuse_model() runs on a
    copy with torch.ao.quantization.fuse_modules wrapped to record each call (it fuses submodules by relative names)."""
    import copy
    import torch.ao.quantization as tq
    model = copy.deepcopy(build(name))
    paths = {id(m): p for p, m in model.named_modules()}
    groups, real = [], tq.fuse_modules

    def record(module, modules_to_fuse, *args, **kwargs):
        prefix = paths[id(module)]
        lists = modules_to_fuse if modules_to_fuse and isinstance(modules_to_fuse[0], (list, tuple)) else [modules_to_fuse]
        groups.extend([".".join(filter(None, [prefix, m])) for m in g] for g in lists)
        return real(module, modules_to_fuse, *args, **kwargs)

    tq.fuse_modules = record
    try:
        model.fuse_model()
    finally:
        tq.fuse_modules = real
    return groups
