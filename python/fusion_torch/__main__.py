"""python3 -m fusion_torch export PACKAGE.MODULE:FACTORY [--args JSON] [--input-shape 1,3,224,224] --out PATH
   python3 -m fusion_torch export --pickled model.pt --out PATH
   python3 -m fusion_torch verify ORIGINAL FUSED"""
import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Mapping

import torch

from . import export, files
from .errors import ExportError
from .faithful import check
from .fuse import fuse_like, with_metadata
from .model_file import paths, read
from .safetensors import SafetensorsError, load_file


def _reason(e):
    """An exception as "Type: message" for a one-line error."""
    name = type(e).__name__
    if name.islower():  # struct.error, zlib.error: the module says what failed
        name = f"{type(e).__module__}.{name}"
    # torch's weights_only refusal advises weights_only=False, which would run the file's code: keep only the reason.
    msg = str(e).rpartition("WeightsUnpickler error: ")[2].strip()
    if not msg and isinstance(e, EOFError):
        msg = "the file ends early"
    return f"{name}: {msg}" if msg else name


def _factory(spec, args):
    mod, sep, name = spec.partition(":")
    if not sep or not mod or not name:
        raise ExportError(f"'{spec}' is not PACKAGE.MODULE:FACTORY (e.g. torchvision.models.quantization:resnet18)")
    try:
        f = importlib.import_module(mod)
        for part in name.split("."):
            f = getattr(f, part)
    except (ImportError, AttributeError) as e:
        raise ExportError(f"cannot find {spec}: {e}") from None
    try:
        kwargs = json.loads(args) if args else {}
    except ValueError as e:
        raise ExportError(f"--args must be a JSON object of keyword arguments: {e}") from None
    if not isinstance(kwargs, dict):
        raise ExportError("--args must be a JSON object of keyword arguments, e.g. '{\"num_classes\": 10}'")
    try:
        return f(**kwargs)
    except Exception as e:  # the user's factory: any failure is reported as such, not as a crash of the exporter
        raise ExportError(f"calling {spec}(**{kwargs}) failed: {_reason(e)}") from None


def _shape(s):
    try:
        dims = [int(d) for d in s.split(",")]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, e.g. 1,3,224,224; got '{s}'")
    return dims


def _pickled(path):
    try:
        model = torch.load(path, map_location="cpu")
    except Exception as e:  # a corrupt file, or a class the unpickler cannot import
        raise ExportError(f"{path}: cannot load the pickled model: {_reason(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{path} holds a {type(model).__name__}, not a module; for a state_dict give the model's "
                          "factory and --weights FILE")
    return model


def _built(spec, args):
    model = _factory(spec, args)
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_weights(model, path):
    """Loads --weights into `model` with strict=True; any failure of the reader (torch.load raises UnpicklingError,
    EOFError, BadZipFile, RuntimeError, ... for a damaged file) is an ExportError naming the file."""
    try:
        state = load_file(path) if path.endswith(".safetensors") else \
            torch.load(path, map_location="cpu", weights_only=True)
    except SafetensorsError:
        raise
    except Exception as e:
        raise ExportError(f"{path}: cannot read the state_dict (--weights): {_reason(e)}") from None
    if not isinstance(state, Mapping):
        raise ExportError(f"{path} holds a {type(state).__name__}, not a state_dict (a dict of tensors, from "
                          "torch.save(model.state_dict(), FILE))")
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise ExportError(f"{path}: the state_dict does not fit the model: {e}") from None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m fusion_torch", description="PyTorch models to Fusion.Dsl's model format")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a model as fusion-model/1 (X.json + X.safetensors, or DIR/model.*)")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("factory", nargs="?", help="PACKAGE.MODULE:FACTORY, called with --args as keyword arguments")
    src.add_argument("--pickled", metavar="FILE", help="a whole model saved with torch.save(model, FILE) "
                                                       "(unpickling runs code from the file: only files you trust)")
    e.add_argument("--args", metavar="JSON", help="keyword arguments for the factory, e.g. '{\"weights\": null}'")
    e.add_argument("--weights", metavar="FILE", help="load this state_dict first (.safetensors, or .pt/.pth from "
                                                     "torch.save(model.state_dict()))")
    e.add_argument("--input-shape", type=_shape, metavar="N,C,H,W", help="an example input shape: recorded, and "
                                                                         "the model is run once on it")
    e.add_argument("--seed", type=int, default=0, help="torch.manual_seed before building (random weights), default 0")
    e.add_argument("--train", action="store_true", help="keep training mode (for QAT fusion); default is eval()")
    e.add_argument("--out", required=True, help="X.json, or a directory for model.json")
    v = sub.add_parser("verify", help="check in PyTorch that a fused model file computes what the exported original "
                                      "computes (for models the Fusion.Dsl engine cannot run)")
    v.add_argument("original", help="the exported model (X.json or its directory); its recorded source rebuilds it")
    v.add_argument("fused", help="the fused model file Fusion.Dsl wrote (X.json or its directory)")
    v.add_argument("--input-shape", type=_shape, metavar="N,C,H,W", help="the probe input (default: the original's)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random probe input, default 0")
    a = p.parse_args(argv)
    if a.command == "verify":
        return _verify(a)
    # An empty path is a usage error (exit 2): "" would mean the current folder, or fall through to the factory.
    for flag, value in (("--out", a.out), ("--pickled", a.pickled), ("--weights", a.weights)):
        if value == "":
            e.error(f"{flag} is empty; give a file path")
    inputs = [("the --pickled file", a.pickled), ("the --weights file", a.weights)]
    source = a.pickled or a.factory
    try:
        files.resolve(*paths(a.out), inputs)  # before any work, and before unpickling runs the file's code
        torch.manual_seed(a.seed)
        model = _pickled(a.pickled) if a.pickled else _built(a.factory, a.args)
        check(model)  # before load_state_dict and train, which recurse through the tree
        if a.weights:
            _load_weights(model, a.weights)
        model.train(a.train)
        record = {"pickled": os.path.abspath(a.pickled)} if a.pickled else \
            {"factory": a.factory, "args": json.loads(a.args) if a.args else {}}
        path = export(model, a.out, input_shape=a.input_shape, inputs=inputs, source=record)
    except RecursionError:  # after check(), only a model whose own code recurses; still the exporter's error
        return _fail(f"{source}: Python's recursion limit was reached while exporting the model")
    except (ExportError, SafetensorsError, RuntimeError, OSError) as err:
        return _fail(err)
    print(path)
    return 0


def _verify(a):
    """Rebuilds the original from its recorded source with its exported weights, fuses it with torch's own
    fuse_modules and the fused file's groups and weights (fuse_like), and compares the two on a random input with the
    tolerance of the PyTorch fixtures (|fused - original| <= 1e-5 + 1e-4 max|original|)."""
    try:
        doc, state = read(a.original)
        source = doc.get("source")
        if not isinstance(source, dict) or not ("factory" in source or "pickled" in source):
            raise ExportError(f"{a.original} records no source to rebuild the model from (exported by an older "
                              "fusion_torch); load the model in Python and call fusion_torch.fuse_like(model, FUSED)")
        if "pickled" in source:
            model = _pickled(source["pickled"])
        else:
            model = _built(source["factory"], json.dumps(source.get("args") or {}))
        check(model)
        try:
            model.load_state_dict(with_metadata(state, model), strict=True)
        except Exception as e:
            raise ExportError(f"{a.original}: its state_dict does not fit the rebuilt model: {e}") from None
        model.train(bool(doc["model"].get("training", False)))
        fused = fuse_like(model, a.fused)
        shape = a.input_shape or doc.get("input_shape")
        if not shape:
            raise ExportError(f"{a.original} records no input shape; give --input-shape N,C,H,W")
        torch.manual_seed(a.seed)
        x = torch.randn(*shape)
        with torch.no_grad():
            y, y_fused = model(x), fused(x)
        diff, scale = float((y - y_fused).abs().max()), float(y.abs().max())
    except RecursionError:
        return _fail(f"{a.original}: Python's recursion limit was reached while rebuilding the model")
    except (ExportError, SafetensorsError, RuntimeError, OSError, AssertionError) as err:  # torch's fusion asserts
        return _fail(err)
    ok = diff <= 1e-5 + 1e-4 * scale
    print(f"PyTorch: max |fused - original| = {diff:.4g} (output max |y| = {scale:.4g}) on an input {list(shape)}: "
          f"{'equivalent' if ok else 'NOT equivalent'}")
    return 0 if ok else 1


def _fail(err):
    # One line: torch's messages (load_state_dict's key lists, the unpickler's advice) span several.
    print("fusion_torch: " + re.sub(r"\s*\n\s*", " ", str(err)).strip(), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
