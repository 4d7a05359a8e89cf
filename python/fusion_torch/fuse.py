"""Back to PyTorch: apply torch's own fuse_modules with the groups a Fusion.Dsl fused model file shows, and load its
state_dict with strict=True."""
import copy
from collections import OrderedDict

import torch.fx as fx
from torch.ao.quantization import fuse_modules, fuse_modules_qat

from .errors import ExportError
from .graph import LeafTracer
from .model_file import read
from .modules import INTRINSIC, TORCH_NN


def _walk(tree, path=""):
    """Every module with its path; a fused module's own children (0, 1, 2) are its parts, not modules of the model."""
    yield path, tree
    if tree["namespace"] == INTRINSIC:
        return
    for c in tree.get("children", []):
        yield from _walk(c["module"], f"{path}.{c['name']}" if path else c["name"])


def groups_of(model, fused_tree):
    """The fuse_modules groups that turn `model` into the tree `fused_tree` (a model-format `model` object). Fusion
    leaves an Identity at every member of a group but the first; each such module joins the group of the module whose
    output it reads in `model`'s torch.fx graph, so the groups are exact and in execution order."""
    original = dict(model.named_modules(remove_duplicate=False))
    absorbed = set()
    for path, node in _walk(fused_tree):
        if path not in original:
            raise ExportError(f"the fused file has a module '{path}' that the PyTorch model does not have; "
                              "it was not fused from this model")
        if node["namespace"] not in (TORCH_NN, INTRINSIC, "user") and not node.get("opaque"):
            raise ExportError(f"module '{path}' is {node['namespace']}.{node['type']}, a fusion PyTorch does not "
                              "have; fuse with PyTorch's rules to load the result into PyTorch")
        if node["type"] == "Identity" and type(original[path]).__name__ != "Identity":
            absorbed.add(path)
    graph = LeafTracer().trace(model)
    group_of, groups = {}, []
    for n in graph.nodes:
        if n.op != "call_module" or n.target not in absorbed or n.target in group_of:
            continue
        src = n.args[0] if n.args else None
        if not (isinstance(src, fx.Node) and src.op == "call_module"):
            raise ExportError(f"module '{n.target}' became an Identity, but its input is not another module's "
                              "output; pass the groups to fuse_like explicitly")
        if src.target not in group_of:
            group_of[src.target] = len(groups)
            groups.append([src.target])
        group_of[n.target] = group_of[src.target]
        groups[group_of[n.target]].append(n.target)
    # Members the graph never calls (googlenet's and inception_v3's auxiliary heads, which an eval forward skips and
    # fuse_model() fuses all the same) join the nearest earlier sibling that is not absorbed itself, as such groups are
    # written (conv, bn, relu of one block); nothing flows through them, so only the structure must match.
    order = list(original)
    for path in [p for p in order if p in absorbed and p not in group_of]:
        parent = path.rpartition(".")[0]
        earlier = [q for q in order[:order.index(path)] if q.rpartition(".")[0] == parent and q not in absorbed]
        if not earlier:
            raise ExportError(f"module {path} became an Identity but never runs in the model's graph and has no earlier "
                              "sibling to have been fused into; pass the groups to fuse_like explicitly")
        head = earlier[-1]
        if head not in group_of:
            group_of[head] = len(groups)
            groups.append([head])
        group_of[path] = group_of[head]
        groups[group_of[path]].append(path)
    return groups


def with_metadata(state, model):
    """`state` (a plain dict of tensors, as a safetensors file holds it) with `model`'s own state_dict metadata: the
    per-module versions that some modules' _load_from_state_dict read (torchvision's MNASNet refuses a state_dict
    without them). A file keeps tensors only, so the metadata comes from the model it is loaded into."""
    out = OrderedDict(state)
    meta = getattr(model.state_dict(), "_metadata", None)
    if meta is not None:
        out._metadata = meta
    return out


def fuse_like(model, fused_json_path, groups=None, qat=None):
    """A copy of `model` fused by PyTorch's own fuse_modules (fuse_modules_qat when `qat`, by default when the model
    is in training mode) with the groups of the Fusion.Dsl fused file `fused_json_path` (derived from its tree unless
    given), with that file's state_dict loaded with strict=True. Returns the fused PyTorch model."""
    doc, state = read(fused_json_path)
    if groups is None:
        groups = groups_of(model, doc["model"])
    qat = model.training if qat is None else qat
    # torch's fuse_modules asserts on an empty list; a file with nothing fused is the model with its weights.
    fused = (fuse_modules_qat if qat else fuse_modules)(model, groups, inplace=False) if groups else copy.deepcopy(model)
    fused.load_state_dict(with_metadata(state, fused), strict=True)
    return fused
