"""fusion_torch: PyTorch models in and out of Fusion.Dsl's model format (fusion-model/1).

    import fusion_torch
    fusion_torch.export(model.eval(), "out/model.json", input_shape=[1, 3, 224, 224])   # -> model.json + .safetensors
    state = fusion_torch.load_state_dict("out/fused.safetensors")                     # plain dict of tensors
    fused = fusion_torch.fuse_like(model, "out/fused.json")     # torch's fuse_modules + strict load of our weights

Needs only torch (torchvision for its models). The command line: python3 -m fusion_torch export --help.
"""
from .errors import ExportError
from .fuse import fuse_like, groups_of
from .model_file import FORMAT, export, read
from .safetensors import SafetensorsError, load_file, save_file


def load_state_dict(path):
    """A safetensors file (such as a model file's state_dict) as a dict name -> tensor, ready for
    model.load_state_dict(..., strict=True)."""
    return load_file(path)


__all__ = ["export", "load_state_dict", "fuse_like", "groups_of", "read", "save_file", "load_file", "ExportError",
           "SafetensorsError", "FORMAT"]
