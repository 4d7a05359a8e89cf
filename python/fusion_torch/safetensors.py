"""The safetensors file layout (8-byte little-endian header size, JSON header, raw little-endian data), read and
written with torch alone: Debian has no `safetensors` package, and the format is small enough to do by hand."""
import json
import os
import struct
import sys

import torch

# dtype <-> safetensors name; the model format stores F32 and I64 and reads F16/BF16 too.
_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
_DTYPES = {v: k for k, v in _NAMES.items()}
_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}

if sys.byteorder != "little":  # the file is little-endian and tensors are written as raw memory
    raise ImportError("fusion_torch writes safetensors as raw memory and needs a little-endian machine")


class SafetensorsError(ValueError):
    """A safetensors file that cannot be read, or a tensor that cannot be written."""


def _raw(t):
    """A tensor's bytes in row-major order (bfloat16 through int16: numpy has no bfloat16)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def dumps(tensors, metadata=None):
    """The bytes of a safetensors file holding `tensors` (a mapping name -> tensor), in the mapping's order."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise SafetensorsError(f"'{name}' is a {type(t).__name__}, not a tensor")
        if t.dtype not in _NAMES:
            raise SafetensorsError(f"tensor '{name}' has dtype {t.dtype}; the model format holds float32, float16, "
                                   "bfloat16 and int64 (convert the model with model.float())")
        b = _raw(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # the data starts 8-byte aligned
    return b"".join([struct.pack("<Q", len(h)), h, *blobs])


def save_file(tensors, path, metadata=None):
    """Writes `tensors` to `path` as safetensors."""
    data = dumps(tensors, metadata)
    with open(path, "wb") as f:
        f.write(data)


def load_file(path):
    """Reads a safetensors file into a dict name -> tensor (in file order), checking every offset against the file's
    real size. Raises SafetensorsError naming the file and the problem."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read()
    if size < 8:
        raise SafetensorsError(f"{path}: {size} bytes is too short for a safetensors file (8-byte header size first)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > size - 8:
        raise SafetensorsError(f"{path}: the header claims {n} bytes, but only {size - 8} follow")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SafetensorsError(f"{path}: the header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header must be a JSON object")
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor '{name}' needs dtype, shape and data_offsets [start, end]") from None
        if dtype not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has dtype {dtype!r} (supported: {', '.join(_DTYPES)})")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise SafetensorsError(f"{path}: tensor '{name}' has an invalid shape {shape}")
        count = 1
        for d in shape:
            count *= d
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(body)):
            raise SafetensorsError(f"{path}: tensor '{name}' data_offsets [{start}, {end}] fall outside the "
                                   f"{len(body)} data bytes")
        if end - start != count * _SIZES[dtype]:
            raise SafetensorsError(f"{path}: tensor '{name}' of shape {shape} and dtype {dtype} needs "
                                   f"{count * _SIZES[dtype]} bytes, its offsets give {end - start}")
        buf = bytearray(body[start:end])  # a copy: the tensor owns its memory and is writable
        t = torch.frombuffer(buf, dtype=_DTYPES[dtype]) if buf else torch.empty(0, dtype=_DTYPES[dtype])
        out[name] = t.reshape(shape)
    return out
