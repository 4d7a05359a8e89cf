"""The module tree of the model format (`model`): PyTorch's type names, namespaces and constructor arguments for the
layers Fusion.Dsl models (its registry of layer kinds, src/Fusion.Dsl/Layers/LayerKinds.cs), and every other library module
carried as opaque."""
import json
from pathlib import Path

import torch.nn as nn

from .errors import ExportError

TORCH_NN, INTRINSIC, USER = "torch.nn", "torch.ao.nn.intrinsic", "user"

# torch.nn layers Fusion.Dsl reads and runs, by class name (the class must be torch's own, not a subclass), with the
# constructor arguments it keeps, read from the module's attributes of the same name. layers.json is generated from the
# .NET registry (LayerKinds, by tools/layer-codegen) and a .NET test fails when it is stale, so the two cannot drift.
LAYERS = {name: tuple(args) for name, args in json.loads((Path(__file__).parent / "layers.json").read_text()).items()}
# torch.nn containers: Sequential runs its children in order; ModuleList and ModuleDict only hold them.
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict"}
# PyTorch's fused modules (torch.ao.nn.intrinsic, also re-exported as torch.nn.intrinsic).
FUSED = {f"{p}{n}d" for n in (1, 2, 3) for p in ("ConvReLU", "ConvBn", "ConvBnReLU")} | \
        {"BNReLU2d", "BNReLU3d", "LinearReLU", "LinearBn1d"}
# Quantization helpers that are plain containers or the identity in a float model.
STUBS = {"FloatFunctional", "QuantStub", "DeQuantStub"}


def _module_of(m):
    return type(m).__module__ or ""


def _opaque_namespace(m):
    """Where an opaque library class lives: torch.nn for the classes torch.nn exports, else its Python module."""
    name, mod = type(m).__name__, _module_of(m)
    return TORCH_NN if mod.startswith("torch.nn.modules.") and getattr(nn, name, None) is type(m) else mod


def kind(m):
    """How a module is described: ('layer'|'container'|'fused'|'user'|'opaque', namespace). A library module of torch
    (torch.nn, torch.ao) that Fusion.Dsl does not model is 'opaque': carried whole (type, arguments, state, print
    layout) and called as one graph node, so fusion works around it."""
    name, mod = type(m).__name__, _module_of(m)
    if mod.startswith(("torch.nn.intrinsic", "torch.ao.nn.intrinsic")):
        if ".qat" in mod or name not in FUSED:
            return "opaque", _opaque_namespace(m)
        return "fused", INTRINSIC
    if mod.startswith("torch.nn.") or mod == "torch.nn":
        if name in LAYERS and getattr(nn, name, None) is type(m):
            return "layer", TORCH_NN
        if name in CONTAINERS:
            return "container", TORCH_NN
        return "opaque", _opaque_namespace(m)
    if mod.startswith(("torch.ao.", "torch.quantization", "torch.nn.quantized")):
        return ("user", USER) if name in STUBS else ("opaque", _opaque_namespace(m))
    return "user", USER  # a user class (also torchvision's blocks and Sequential subclasses): a container


# The quantization stubs are called as leaves, so the graph records where the model quantizes and dequantizes (their
# forward is the identity in float mode; traced through, a prepare/convert flow could not tell where they stand).
CALLED_STUBS = {"QuantStub", "DeQuantStub"}


def is_leaf(m):
    """torch.fx leaves: the layers, fused modules, opaque library modules and QuantStub/DeQuantStub, each called as a
    whole."""
    k = kind(m)[0]
    return k in ("layer", "fused", "opaque") or (k == "user" and type(m).__name__ in CALLED_STUBS and not list(m.children()))


def _json_value(v):
    """A constructor-like attribute as JSON, or None when it is not plain data (tensors, modules, callables)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, (tuple, list)) and all(x is None or isinstance(x, (bool, int, float, str)) for x in v):
        return list(v)
    return None


def opaque_args(m):
    """An opaque module's plain attributes (its constructor's arguments as PyTorch stores them), for the record: the
    module is not rebuilt from them, so what is not plain data is left out."""
    return {k: _json_value(v) for k, v in sorted(vars(m).items())
            if not k.startswith("_") and k != "training" and (v is None or _json_value(v) is not None)}


def _t(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def _refuse(path, m, what):
    raise ExportError(f"module '{path or '<root>'}' ({type(m).__name__}): {what}")


def layer_schema():
    """The layers this exporter describes with their arguments, sorted by name, in the form of the .NET side's
    LayerKinds.SchemaJson: a test checks that the two agree."""
    return {name: list(LAYERS[name]) for name in sorted(LAYERS)}


def _arg(m, name):
    # PyTorch keeps `bias` as the parameter itself; the argument is whether it exists.
    return m.bias is not None if name == "bias" else _t(getattr(m, name))


def args_of(m, path):
    """PyTorch's constructor arguments under PyTorch's names, as Fusion.Dsl reads them (LAYERS); refuses the values
    Fusion.Dsl does not implement."""
    if isinstance(m, nn.MaxPool2d) and m.return_indices:
        _refuse(path, m, "return_indices=True is not supported; use a MaxPool2d that returns the values only")
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
        _refuse(path, m, "divisor_override is not supported")
    if isinstance(m, nn.AdaptiveAvgPool2d) and \
            any(s is None for s in (m.output_size if isinstance(m.output_size, (tuple, list)) else [m.output_size])):
        _refuse(path, m, "an output_size with None is not supported; give both sizes")
    return {name: _arg(m, name) for name in LAYERS.get(type(m).__name__, ())}


def own_state(m):
    """The module's own state_dict entries (parameters, then persistent buffers), in state_dict order."""
    skip = getattr(m, "_non_persistent_buffers_set", set())
    return [k for k, v in m._parameters.items() if v is not None] + \
           [k for k, v in m._buffers.items() if v is not None and k not in skip]


def describe(m, path=""):
    """The `model` object of the format for `m` and its subtree; refuses what Fusion.Dsl cannot read."""
    what, ns = kind(m)
    d = {"type": type(m).__name__, "namespace": ns, "training": m.training}
    if what == "opaque":
        d["opaque"] = True
        a = opaque_args(m)
        if a:
            d["args"] = a
        d["extra_repr"] = m.extra_repr()
    if what == "layer":
        a = args_of(m, path)
        if a:
            d["args"] = a
    state = own_state(m)
    if state:
        if what in ("container", "fused"):
            _refuse(path, m, f"a {type(m).__name__} holds no tensors of its own in Fusion.Dsl, but this one has "
                             f"{', '.join(state)}; move them into a submodule")
        d["state"] = state
    # _modules, not named_children(): a module registered under two names appears twice in state_dict, so twice here.
    kids = [{"name": n, "module": describe(c, f"{path}.{n}" if path else n)} for n, c in m._modules.items() if c is not None]
    if kids:
        if what == "layer":
            _refuse(path, m, "a layer with child modules is not supported")
        d["children"] = kids
    return d
