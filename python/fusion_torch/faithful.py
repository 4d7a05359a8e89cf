"""What a model file cannot carry: anything that changes a module's output outside its class's `forward`. The model
format describes a module by its class, its arguments and its state_dict, and Fusion.Dsl runs no Python, so forward
hooks and pre-hooks (per module or global), parametrizations, an overridden `__call__`, a `forward` replaced on the
instance and a state_dict hook would all be dropped, and the exported model would compute something else. A model
that has one is refused, naming the module. Backward hooks and load_state_dict pre-hooks do not change what forward
computes or what is exported, and are allowed.

Also the tree's shape: the walk is iterative and bounded by MAX_DEPTH, so a model nested thousands deep (or holding
itself) gets an error naming the module instead of a RecursionError from torch's own recursive walks."""
import torch.fx as fx
import torch.nn as nn
import torch.nn.modules.module as torch_module
from torch.nn.utils import parametrize

from .errors import ExportError
from .modules import _refuse

# Module levels below the root. The exporter's own recursion (describe, torch.fx tracing about 7 Python frames per
# nested user module, json.dumps three levels per module) stays well inside Python's default limit of 1000 frames, and
# Fusion.Dsl's JSON reader (1024 levels, three per module) reads every tree this deep.
MAX_DEPTH = 100

_HOOKS_HINT = ("Fusion.Dsl runs no Python, so fusion_torch cannot carry hooks: remove it (handle.remove()) before "
               "exporting, or export a model without it")


def _unwrap(hook):
    return getattr(hook, "func", hook)  # functools.partial


def _hook_name(hook):
    f = _unwrap(hook)
    return getattr(f, "__qualname__", None) or type(f).__name__


def _short(path, keep=4):
    parts = path.split(".")
    if len(parts) <= 2 * keep + 1:
        return path
    return ".".join(parts[:keep] + [f"<{len(parts) - 2 * keep} more>"] + parts[-keep:])


def walk(root):
    """Every module of `root` with its path, parents first, in `_modules` order (a module registered under two names
    twice), without recursion. Raises ExportError for nesting deeper than MAX_DEPTH or a module inside itself."""
    stack = [("", root, 0, ())]
    while stack:
        path, m, depth, ancestors = stack.pop()
        if id(m) in ancestors:
            _refuse(path, m, "the module contains itself (a cycle through its children); a model must be a tree")
        if depth > MAX_DEPTH:
            _refuse(_short(path), m, f"nested {depth} levels deep, more than the {MAX_DEPTH} fusion_torch exports; "
                                     "flatten the nesting (e.g. one Sequential of the layers instead of Sequentials "
                                     "inside Sequentials)")
        yield path, m
        inner = ancestors + (id(m),)
        kids = [(f"{path}.{n}" if path else n, c, depth + 1, inner) for n, c in m._modules.items() if c is not None]
        stack.extend(reversed(kids))


def _own_call(m):
    """Whether the module's class runs code of its own around forward in __call__."""
    call = type(m).__call__
    if call is nn.Module.__call__:
        return False
    # torch.fx's GraphModule wraps __call__ for error messages only; it runs Module.__call__ unless its class had one.
    return not (isinstance(m, fx.GraphModule) and getattr(type(m)._wrapped_call, "cls_call", True) is None)


def _check_module(path, m):
    for attr, what, effect in (("_forward_pre_hooks", "forward pre-hook", "runs before forward and may change its "
                                "input or its tensors"),
                               ("_forward_hooks", "forward hook", "runs after forward and may change its output")):
        hooks = getattr(m, attr, None)
        if not hooks:
            continue
        hook = next(iter(hooks.values()))
        if type(_unwrap(hook)).__module__.startswith("torch.nn.utils."):
            _refuse(path, m, f"has a {what} ({_hook_name(hook)}) from torch.nn.utils, which recomputes its tensors "
                             "before forward; make it permanent before exporting (torch.nn.utils.prune.remove, "
                             "remove_weight_norm or remove_spectral_norm)")
        _refuse(path, m, f"has a {what} ({_hook_name(hook)}), which {effect}; {_HOOKS_HINT}")
    if parametrize.is_parametrized(m):
        name, plist = next(iter(m.parametrizations.items()))
        _refuse(path, m, f"its {name} is computed by a parametrization ({type(plist[0]).__name__}, "
                         "torch.nn.utils.parametrize), which Fusion.Dsl cannot run: bake it in with "
                         f"parametrize.remove_parametrizations(module, '{name}', leave_parametrized=True) "
                         "before exporting")
    if _own_call(m):
        _refuse(path, m, "its class overrides __call__, which runs outside forward; Fusion.Dsl reproduces forward "
                         "only: move that code into forward")
    if "forward" in vars(m):
        _refuse(path, m, "its forward is replaced on the instance (module.forward = ...); Fusion.Dsl runs the "
                         "class's forward: subclass it instead, or export a model without it")
    hooks = getattr(m, "_state_dict_hooks", None)
    if hooks:
        _refuse(path, m, f"has a state_dict hook ({_hook_name(next(iter(hooks.values())))}), so the exported "
                         "state_dict may not hold the tensors forward uses; remove it before exporting")


def check(root):
    """Raises ExportError, naming the module (or the global registration), for a model whose output depends on
    something outside its modules' forward, or whose tree is too deep or not a tree."""
    for attr, what, register in (("_global_forward_pre_hooks", "forward pre-hook", "register_module_forward_pre_hook"),
                                 ("_global_forward_hooks", "forward hook", "register_module_forward_hook")):
        hooks = getattr(torch_module, attr, None)
        if hooks:
            raise ExportError(f"a global {what} ({_hook_name(next(iter(hooks.values())))}) is registered with "
                              f"torch.nn.modules.module.{register} and runs on every module; {_HOOKS_HINT}")
    for path, m in walk(root):
        _check_module(path, m)
