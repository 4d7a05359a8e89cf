"""The root's torch.fx graph (`forward`): symbolic_trace with the layers, PyTorch's fused modules and opaque library
modules as leaves, so calls into user modules, Sequential, ModuleList and ModuleDict are inlined and call leaf paths
(`layers.0.conv`). Functions and methods in Fusion.Dsl's table of operations (src/Fusion.Dsl/Graphs/GraphOps.cs,
checked against `schema()` by a test) are written under its names and checked against its parameters; any other call
is carried as an opaque operation under its qualified name, with its arguments."""
import dis
import inspect
import math
import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from .errors import ExportError
from .modules import is_leaf, kind

# Python callables -> the engine's function name and its parameter names (positional order, keywords allowed).
_ADD = ("add", ("input", "other"))
_MUL = ("mul", ("input", "other"))
_SUB = ("sub", ("input", "other"))
_DIV = ("div", ("input", "other", "rounding_mode"))
_MATMUL = ("matmul", ("input", "other"))
_SIGMOID = ("sigmoid", ("input",))
_MEAN = ("mean", ("input", "dim", "keepdim", "dtype"))
FUNCTIONS = {
    operator.add: _ADD, torch.add: _ADD, operator.mul: _MUL, torch.mul: _MUL,
    operator.sub: _SUB, torch.sub: _SUB, operator.truediv: _DIV, torch.div: _DIV,
    operator.floordiv: ("floordiv", ("input", "other")), operator.eq: ("eq", ("input", "other")),
    operator.matmul: _MATMUL, torch.matmul: _MATMUL, torch.bmm: ("bmm", ("input", "mat2")),
    torch.relu: ("relu", ("input", "inplace")), F.relu: ("relu", ("input", "inplace")),
    F.hardsigmoid: ("hardsigmoid", ("input", "inplace")),
    torch.sigmoid: _SIGMOID, F.sigmoid: _SIGMOID,
    F.gelu: ("gelu", ("input", "approximate")),
    F.relu6: ("relu6", ("input", "inplace")),
    F.hardtanh: ("hardtanh", ("input", "min_val", "max_val", "inplace")),
    F.softmax: ("softmax", ("input", "dim", "_stacklevel", "dtype")),
    F.layer_norm: ("layer_norm", ("input", "normalized_shape", "weight", "bias", "eps")),
    F.dropout: ("dropout", ("input", "p", "training", "inplace")),
    torch.flatten: ("flatten", ("input", "start_dim", "end_dim")),
    torch.cat: ("cat", ("tensors", "dim")),
    F.interpolate: ("interpolate", ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                                    "antialias")),
    F.adaptive_avg_pool2d: ("adaptive_avg_pool2d", ("input", "output_size")),
    F.avg_pool2d: ("avg_pool2d", ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override")),
    F.max_pool2d: ("max_pool2d", ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                  "return_indices")),
    torch.mean: _MEAN,
    torch.reshape: ("reshape", ("input", "shape")),
    torch.permute: ("permute", ("input", "dims")),
    torch.transpose: ("transpose", ("input", "dim0", "dim1")),
    torch.chunk: ("chunk", ("input", "chunks", "dim")),
    torch.split: ("split", ("tensor", "split_size_or_sections", "dim")),
    torch.swapaxes: ("swapaxes", ("input", "axis0", "axis1")),
    torch.einsum: ("einsum", ("equation", "operands")),
    operator.getitem: ("getitem", ("a", "b")),
    getattr: ("getattr", ("object", "name")),
    torch._assert: ("_assert", ("condition", "message")),
}
# torchvision's functions that its models call (StochasticDepth's functional form; the Swin Transformer's window
# functions, which torchvision marks as leaves of the trace). torchvision is optional here: without it the names still
# stand in schema(), under keys no traced call can match.
_TORCHVISION = {
    "torchvision.ops:stochastic_depth": ("stochastic_depth", ("input", "p", "mode", "training")),
    "torchvision.models.swin_transformer:shifted_window_attention": (
        "shifted_window_attention", ("input", "qkv_weight", "proj_weight", "relative_position_bias", "window_size",
                                     "num_heads", "shift_size", "attention_dropout", "dropout", "qkv_bias",
                                     "proj_bias", "logit_scale")),
    "torchvision.models.swin_transformer:_get_relative_position_bias": (
        "relative_position_bias", ("relative_position_bias_table", "relative_position_index", "window_size")),
    "torchvision.models.swin_transformer:_patch_merging_pad": ("patch_merging_pad", ("x",)),
}
for _where, _op in _TORCHVISION.items():
    _module, _name = _where.split(":")
    try:
        FUNCTIONS[getattr(__import__(_module, fromlist=[_name]), _name)] = _op
    except (ImportError, AttributeError):
        FUNCTIONS[_where] = _op
# Tensor methods the engine evaluates and their parameter names after self.
METHODS = {
    "contiguous": ("memory_format",), "squeeze": ("dim",), "unsqueeze": ("dim",), "reshape": ("shape",),
    "view": ("shape",), "flatten": ("start_dim", "end_dim"), "add": ("other",), "mul": ("other",), "relu": (),
    "sub": ("other",), "div": ("other", "rounding_mode"), "matmul": ("other",), "sigmoid": (),
    "softmax": ("dim", "dtype"), "mean": ("dim", "keepdim", "dtype"), "permute": ("dims",),
    "transpose": ("dim0", "dim1"), "chunk": ("chunks", "dim"), "split": ("split_size", "dim"), "expand": ("size",),
    "size": ("dim",), "dim": (), "swapaxes": ("axis0", "axis1"),
}
# Functions whose last parameter takes the remaining positional arguments (torch.einsum(eq, a, b)).
FUNCTION_VARARGS = {"einsum"}
# Methods whose last parameter also takes the remaining positional arguments (x.view(2, -1) is x.view((2, -1))).
VARARGS = {"reshape", "view", "permute", "expand"}
_HINT = ("rewrite it with the operations Fusion.Dsl runs (modules of torch.nn it supports, torch.add/mul/cat/flatten/"
         "reshape, F.relu, F.hardsigmoid, F.adaptive_avg_pool2d, and the tensor methods "
         f"{', '.join(sorted(METHODS))}), or wrap the part in a traceable submodule and export that")


def _unpacking(proxy, frame):
    """`a, b = x.size()`, `n, c, h, w = x.shape`, `x, _ = self.attn(q, k, v)`: torch 1.13's Proxy.__iter__ finds the
    unpacking instruction by `f_lasti // 2`, which is wrong since Python 3.11 (instructions carry inline caches); the
    instruction at the traced code's exact offset tells whether the proxy is being unpacked, and into how many values.
    The values as getitem proxies, or None when `frame` is not unpacking."""
    if frame is None:
        return None
    inst = next((i for i in dis.get_instructions(frame.f_code) if i.offset == frame.f_lasti), None)
    if inst is None or inst.opname != "UNPACK_SEQUENCE":
        return None
    return (proxy[i] for i in range(inst.argval))


class _UnpackingProxy(fx.Proxy):
    """A proxy whose unpacking works on Python 3.11 (see `_unpacking`); torch's own index can even be out of range."""

    def __iter__(self):
        frame = inspect.currentframe()
        values = _unpacking(self, frame.f_back if frame is not None else None)
        return values if values is not None else self.tracer.iter(self)


class LeafTracer(fx.Tracer):
    """Leaves are the layers the engine runs; remembers the module being traced so an error can name it."""

    def __init__(self):
        super().__init__()
        self.stack = []
        self.failed_in = None   # the innermost module whose forward raised

    def is_leaf_module(self, m, qualname):
        return is_leaf(m)

    def proxy(self, node):
        return _UnpackingProxy(node, self)

    def iter(self, obj):
        # Attribute proxies (x.shape) keep torch's Proxy.__iter__, which lands here: look two frames up.
        frame = inspect.currentframe()
        caller = frame.f_back.f_back if frame is not None and frame.f_back is not None else None
        values = _unpacking(obj, caller)
        return values if values is not None else super().iter(obj)

    def call_module(self, m, forward, args, kwargs):
        self.stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.stack[-1]
            raise
        finally:
            self.stack.pop()


def _fail(node, what):
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", repr(node.target))
    raise ExportError(f"graph node '{node.name}' ({node.op} {target}): {what}")


def _arg(node, a):
    """An argument as the model format writes it: a reference, a list, a JSON scalar, or one of the tagged Python
    constants an opaque call may take (slices, Ellipsis, dtypes, devices, memory formats, non-finite floats)."""
    if isinstance(a, fx.Node):
        return {"ref": a.name}
    if isinstance(a, (list, tuple)):
        return [_arg(node, x) for x in a]
    if a is None or isinstance(a, (bool, int, str)):
        return a
    if isinstance(a, float):
        return a if math.isfinite(a) else {"float": "nan" if a != a else ("inf" if a > 0 else "-inf")}
    if a is torch.contiguous_format:
        return None  # contiguous(memory_format=torch.contiguous_format) is contiguous()
    if isinstance(a, slice):
        if any(isinstance(x, fx.Node) for x in (a.start, a.stop, a.step)):
            _fail(node, f"the slice {a} has a bound computed in the graph, which the model format does not carry; "
                        "use constant bounds")
        return {"slice": [_arg(node, a.start), _arg(node, a.stop), _arg(node, a.step)]}
    if a is Ellipsis:
        return {"ellipsis": True}
    if isinstance(a, torch.dtype):
        return {"dtype": str(a)}
    if isinstance(a, torch.device):
        return {"device": str(a)}
    if isinstance(a, torch.memory_format):
        return {"memory_format": str(a)}
    _fail(node, f"the argument {a!r} ({type(a).__name__}) is not a constant the model format holds; {_HINT}")


def _qualified(target):
    """An opaque function's name as the model format records it: its module and name (torch.nn.functional.gelu)."""
    return fx.node._get_qualified_name(target)


def schema():
    """The operations this exporter maps to Fusion.Dsl's names, with their parameters (methods without self), in the
    form of the .NET side's GraphOps.SchemaJson: a test checks that the two agree."""
    functions = {"tensor": ["data", "dtype"]}  # written for tensor constants (_tensor_constant), not a traced call
    for name, params in FUNCTIONS.values():
        functions[name] = list(params)
    methods = {name: list(params) for name, params in METHODS.items()}
    return {"functions": dict(sorted(functions.items())), "methods": dict(sorted(methods.items()))}


def _check_call(node, params, what):
    if params is None:
        if node.kwargs:
            _fail(node, f"{what} takes its sizes positionally here, got keywords {', '.join(node.kwargs)}")
        return
    if len(node.args) > len(params):
        _fail(node, f"{what} takes at most {len(params)} arguments ({', '.join(params)}), got {len(node.args)}")
    extra = [k for k in node.kwargs if k not in params]
    if extra:
        _fail(node, f"{what}: Fusion.Dsl does not take the argument(s) {', '.join(extra)} (it takes {', '.join(params)})")


# A tensor computed at trace time is written out as torch.tensor(values, dtype=...); this bounds how large it may be
# (the .NET side states the same bound as Limits.MaxGraphConstantElements).
MAX_CONSTANT_ELEMENTS = 1 << 20
_CONSTANT_DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32, torch.bool)


def _tensor_constant(node, root):
    """The arguments of torch.tensor(values, dtype=...) that rebuild the tensor a get_attr outside the state_dict
    reads: fx records a tensor computed during tracing (maxvit's `self.relative_position_index.view(-1)`, evaluated
    on a plain tensor attribute) as `_tensor_constantN`, an attribute of the traced module that no state_dict holds."""
    value = root
    try:
        for part in node.target.split("."):
            value = getattr(value, part)
    except AttributeError:
        _fail(node, "reads an attribute that does not exist on the traced module")
    if not isinstance(value, torch.Tensor) or isinstance(value, torch.nn.Parameter):
        _fail(node, "reads an attribute that is not a parameter or persistent buffer in the state_dict "
                    "(register it with register_buffer or nn.Parameter)")
    if value.dtype not in _CONSTANT_DTYPES:
        _fail(node, f"a tensor constant of dtype {value.dtype}; the model format carries "
                    f"{', '.join(str(d) for d in _CONSTANT_DTYPES)} (register it with register_buffer instead)")
    if value.numel() == 0 or value.numel() > MAX_CONSTANT_ELEMENTS:
        _fail(node, f"a tensor constant of shape {list(value.shape)}; the model format writes constants of 1 to "
                    f"{MAX_CONSTANT_ELEMENTS} elements in the graph (register a larger one with register_buffer)")
    if value.is_quantized or value.layout != torch.strided or value.is_complex():
        _fail(node, "a tensor constant that is not a dense real tensor")
    data = value.detach().cpu().tolist()
    if value.dtype in (torch.float32, torch.float64):
        data = _arg(node, data)  # non-finite values as tagged floats
    return [data], {"dtype": {"dtype": str(value.dtype)}}


def trace(root):
    """torch.fx's graph of `root` as the model format's node list; refuses what Fusion.Dsl does not evaluate."""
    tracer = LeafTracer()
    try:
        g = tracer.trace(root)
    except ExportError:
        raise
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ... for untraceable Python
        where = f"module '{tracer.failed_in}'" if tracer.failed_in else f"the root {type(root).__name__}"
        if isinstance(e, RecursionError):  # a forward that calls itself, or user modules nested very deeply
            raise ExportError(f"torch.fx cannot trace {where}: Python's recursion limit was reached (a forward "
                              "that calls itself, or user modules nested too deeply); flatten the nesting") from None
        raise ExportError(f"torch.fx cannot trace {where}: {type(e).__name__}: {e}. Data-dependent control flow "
                          "and Python operations on tensor values cannot be recorded; make that forward traceable "
                          "(e.g. move the branch into a module argument), or export a traceable submodule "
                          "and fuse inside it") from None
    modules = dict(root.named_modules(remove_duplicate=False))
    state = root.state_dict(keep_vars=True)
    nodes, inputs = [], 0
    for n in g.nodes:
        e = {"op": n.op, "name": n.name}
        if n.op == "placeholder":
            inputs += 1
            if inputs > 1:
                _fail(n, "the forward takes more than one input; Fusion.Dsl runs a model on one tensor "
                         "(wrap it in a module whose forward takes one)")
            if n.args:
                _fail(n, "an input with a default value is not supported; give forward a single tensor argument")
            args = ()
        elif n.op == "call_module":
            e["target"] = n.target
            if n.target not in modules or not is_leaf(modules[n.target]):
                _fail(n, "calls a module that is not a layer Fusion.Dsl runs")
            if kind(modules[n.target])[0] != "opaque" and len(n.args) + len(n.kwargs) != 1:
                _fail(n, "a layer is called with one tensor in Fusion.Dsl")
            args = n.args
        elif n.op == "call_function":
            if n.target in FUNCTIONS:
                e["target"], params = FUNCTIONS[n.target]
                _check_call(n, None if e["target"] in FUNCTION_VARARGS else params, e["target"])
            else:  # carried as an opaque operation under its qualified name
                e["target"] = _qualified(n.target)
            args = n.args
        elif n.op == "call_method":
            if n.target in METHODS:
                params = METHODS[n.target]
                _check_call(n, None if n.target in VARARGS else ("self",) + params, n.target)
            e["target"] = n.target
            args = n.args
        elif n.op == "get_attr":
            if n.target in state:
                e["target"] = n.target
                args = ()
            else:  # a tensor computed at trace time (fx's _tensor_constantN) or a plain tensor attribute
                e["op"], e["target"] = "call_function", "tensor"
                args, n_kwargs = _tensor_constant(n, tracer.root)
                e["args"] = args
                e["kwargs"] = n_kwargs
                nodes.append(e)
                continue
        elif n.op == "output":
            if len(n.args) != 1 or not isinstance(n.args[0], fx.Node):
                _fail(n, "the forward must return one tensor (not a tuple, list or dict)")
            args = n.args
        else:
            _fail(n, "an fx node kind Fusion.Dsl does not know")
        if args:
            e["args"] = [_arg(n, a) for a in args]
        kwargs = {k: _arg(n, v) for k, v in n.kwargs.items()}
        if n.op == "call_method" and n.target == "contiguous":
            kwargs.pop("memory_format", None)
        if kwargs:
            e["kwargs"] = kwargs
        nodes.append(e)
    if inputs == 0:
        raise ExportError(f"the forward of {type(root).__name__} takes no input")
    return nodes


def needs_graph(root):
    """A torch.nn Sequential root, a layer or a fused module runs without a graph; anything else needs one."""
    k = kind(root)
    if k[0] == "opaque":
        raise ExportError(f"the root is {k[1]}.{type(root).__name__}, a library module Fusion.Dsl carries but does not "
                          "model; export a model that contains it")
    if k[0] == "container":
        if type(root).__name__ != "Sequential":
            raise ExportError(f"the root is a {type(root).__name__}, which has no forward; export the module that "
                              "uses it")
        return False
    return k[0] == "user"
