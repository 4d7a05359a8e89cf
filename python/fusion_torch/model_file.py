"""fusion-model/1 files: NAME.json (format, name, model tree, forward graph, state_dict file name, input_shape) and
NAME.safetensors (the state_dict under PyTorch's own keys). See docs/model-format.md."""
import json
import os

import torch

from . import files, safetensors
from .errors import ExportError
from .faithful import check
from .graph import needs_graph, trace
from .modules import describe

FORMAT = "fusion-model/1"


def paths(path):
    """(json path, safetensors path) for a `X.json` path or a directory (DIR/model.json)."""
    path = os.fspath(path)
    if path.endswith(".json"):
        return path, path[:-5] + ".safetensors"
    return os.path.join(path, "model.json"), os.path.join(path, "model.safetensors")


def document(model, name, input_shape=None, description=None, source=None):
    """The JSON document and the state_dict of `model`; raises ExportError before anything is written."""
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
    check(model)  # first: describe and torch.fx recurse, and would drop hooks silently
    tree = describe(model)
    forward = trace(model) if needs_graph(model) else None
    state = model.state_dict()
    doc = {"format": FORMAT, "name": name}
    if description:
        doc["description"] = description
    if source:
        doc["source"] = source  # how to rebuild the PyTorch model: `python3 -m fusion_torch verify` reads it
    doc["model"] = tree
    doc["forward"] = forward
    if input_shape is not None:
        shape = [int(d) for d in input_shape]
        if not shape or any(d <= 0 for d in shape):
            raise ExportError(f"input_shape must be positive integers, got {list(input_shape)}")
        doc["input_shape"] = shape
    return doc, state


def export(model, path, input_shape=None, name=None, description=None, inputs=(), source=None):
    """Writes `model` in the model format: `path` is `X.json` (writes X.json and X.safetensors) or a directory
    (writes DIR/model.json and DIR/model.safetensors). The model is described as it is (train or eval mode); when
    `input_shape` is given, the exported graph is checked by running the model on a zero input of that shape.
    Raises ExportError, naming the module path or graph node, for a model Fusion.Dsl cannot read or that computes
    something outside its modules' forward (hooks, parametrizations); naming the file for a target that is not a
    regular file or is one of `inputs` ((label, path) pairs: the files the model was read from). Then nothing is
    written. The two files are written together: on any failure an existing pair is left as it was. Returns the JSON
    path."""
    if not os.fspath(path):
        raise ExportError("the output path is empty; give X.json or a directory")
    json_path, st_path = paths(path)
    # A directory's name labels the model better than its model.json.
    stem = os.path.splitext(os.path.basename(json_path))[0] if os.fspath(path).endswith(".json") else \
        os.path.basename(os.path.normpath(os.fspath(path)))
    doc, state = document(model, name or stem, input_shape, description, source)
    doc["state_dict"] = os.path.basename(st_path)
    if input_shape is not None:
        was = model.training
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(doc["input_shape"]))
        except Exception as e:
            raise ExportError(f"the model does not run on an input of shape {doc['input_shape']}: "
                              f"{type(e).__name__}: {e}") from None
        finally:
            model.train(was)
    blob = safetensors.dumps(state, {"format": "pt"})
    text = json.dumps(doc, indent=1) + "\n"
    json_real, st_real, folder = files.resolve(json_path, st_path, inputs)
    try:
        files.write_together(folder, [(st_real, blob), (json_real, text.encode("utf-8"))])
    except OSError as e:
        raise ExportError(f"{json_path}: cannot write the model: {e.strerror or e}") from None
    return json_path


def read(path):
    """(document, state_dict) of a model-format file (`X.json` or a directory with model.json)."""
    json_path = paths(path)[0]
    try:
        with open(json_path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"{json_path}: cannot read the model file: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ExportError(f"{json_path}: not a {FORMAT} file (its 'format' is {doc.get('format') if isinstance(doc, dict) else None!r})")
    st = doc.get("state_dict")
    if not isinstance(st, str) or os.path.basename(st) != st:
        raise ExportError(f"{json_path}: 'state_dict' must be a file name beside the JSON, got {st!r}")
    return doc, safetensors.load_file(os.path.join(os.path.dirname(json_path), st))
