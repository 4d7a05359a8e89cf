"""Dumps the structure of torchvision's quantizable resnet18, resnet50 and mobilenet_v2
(weights=None, quantize=False) for Fusion.Dsl's model zoo tests: the module tree (types,
namespaces, constructor args, state names; no tensors), the torch.fx graph of the root and
the groups the network's own fuse_model() fuses, plus parameter counts.

Reuses the fixture generator's describe / graph_of / fuse_list_of so the format is exactly
the fixtures' (fusion-fixture/1 `model`, `forward`, `fuse`). Run with Debian's PyTorch:
    /usr/bin/python3 tools/torchvision-structure/dump_structure.py tests/Fusion.Dsl.Tests/Zoo/data
"""
import json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The shared fixture scripts live beside the repository (../shared/tools/pytorch-fixtures).
FIXTURE_TOOLS = os.environ.get("FIXTURE_TOOLS",
                               os.path.join(HERE, "..", "..", "..", "shared", "tools", "pytorch-fixtures"))
sys.path.insert(0, FIXTURE_TOOLS)

import torch
import torchvision
import torchvision.models.quantization as qm
from fixturelib import describe, graph_of
from netcases import fuse_list_of

NETS = {
    "resnet18": lambda: qm.resnet18(weights=None, quantize=False),
    "resnet50": lambda: qm.resnet50(weights=None, quantize=False),
    "mobilenet_v2": lambda: qm.mobilenet_v2(weights=None, quantize=False),
}


def dump(name, ctor):
    model = ctor().eval()
    # Tree and graph first: fuse_model() rewrites the model in place.
    tree = describe(model)
    graph = graph_of(model)
    params = sum(p.numel() for p in model.parameters())
    state = len(model.state_dict())
    fuse = fuse_list_of(model)
    return {"format": "fusion-zoo-structure/1", "name": name, "torch_version": torch.__version__,
            "torchvision_version": torchvision.__version__, "input_shape": [1, 3, 224, 224],
            "num_classes": 1000, "parameter_count": params, "state_dict_entries": state,
            "model": tree, "forward": graph, "fuse": fuse}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, ctor in NETS.items():
        case = dump(name, ctor)
        # Compact separators keep the committed files small.
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(case, f, separators=(",", ":"))
            f.write("\n")
        print(name, case["parameter_count"], len(case["forward"]), len(case["fuse"]))


if __name__ == "__main__":
    main()
