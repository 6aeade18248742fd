"""A saved model's two files checked against each other before any tensor is made.

A model is rebuilt from its JSON config (kind, architecture, schema) and then filled from
its safetensors file. A config edited to ask for a 10^9-wide layer used to be built first
(tens of GB, minutes) and only then compared with the weights. Here the weights file's
header - a small JSON index of every tensor's dtype and shape - is read alone, every size
in the config is bounded by it, the model is built on PyTorch's "meta" device (shapes
only, no memory), and each tensor the config implies must match the stored one exactly.
Only then does `pakd.models.load` build the real model, which therefore allocates no more
than the weights file holds.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from ..errors import PakdError
from ..limits import (MAX_MODEL_CONFIG_BYTES, MAX_SAFETENSORS_HEADER, quote, read_input, short,
                      size_text)

AGAIN = "train or distill it again"

# safetensors dtype names and their sizes in bytes
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8,
                "F8_E4M3": 1, "F8_E5M2": 1}


def read_config(path: Path) -> dict:
    """A model's JSON config as a mapping (size-capped), or a `PakdError` naming the file."""
    path = Path(path)
    raw = read_input(path, limit=MAX_MODEL_CONFIG_BYTES, what="model config",
                     fix=f"a model config is a few KB: check the file, or {AGAIN}")
    try:
        cfg = json.loads(raw)
    except (ValueError, RecursionError) as e:
        what = "empty" if not raw.strip() else f"not valid JSON ({quote(str(e), 80)})"
        raise PakdError(f"{path} is {what}: it is not a model configuration pakd can read; "
                        f"{AGAIN}, or restore the file from the run") from None
    if not isinstance(cfg, dict):
        raise PakdError(f"{path} holds a JSON {type(cfg).__name__}, not a model "
                        f"configuration (an object with kind, arch and schema); {AGAIN}")
    return cfg


def weight_shapes(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``name -> (dtype, shape)`` of every tensor in a safetensors file, from its header
    alone (8 bytes of length, then a JSON index), each entry checked against the file's
    size: nothing the header claims can make a reader allocate more than the file holds."""
    path = Path(path)
    size = path.stat().st_size

    def bad(why: str) -> PakdError:
        return PakdError(f"{path} is not a readable safetensors file ({why}); it may be "
                         f"truncated or tampered with; {AGAIN}")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes: shorter than a header")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise bad(f"its header claims {size_text(n)}, more than the file or pakd's limit "
                      f"of {size_text(MAX_SAFETENSORS_HEADER)}")
        text = f.read(n)
    try:
        index = json.loads(text)
    except (ValueError, RecursionError):
        raise bad("its header is not JSON") from None
    if not isinstance(index, dict):
        raise bad("its header is not a JSON object")
    data = size - 8 - n
    out = {}
    for name, entry in index.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in _DTYPE_BYTES and isinstance(shape, list)
                  and all(type(d) is int and d >= 0 for d in shape)
                  and type(begin) is int and type(end) is int and 0 <= begin <= end <= data
                  and end - begin == math.prod(shape) * _DTYPE_BYTES[dtype])
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise bad(f"the entry of tensor {quote(name)} does not describe bytes in the file")
        out[name] = (dtype, tuple(shape))
    return out


def _ints(value, where: str):
    """(path, int) of every integer inside a config value (lists and mappings walked)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield where, value
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _ints(v, f"{where}[{k}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _ints(v, f"{where}.{k}")


def _numbers(value, where: str):
    """(path, float) of every floating-point number inside a config value."""
    if isinstance(value, float):
        yield where, value
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _numbers(v, f"{where}[{k}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")


def _lists(value, where: str):
    if isinstance(value, list):
        yield where, len(value)
        for k, v in enumerate(value):
            yield from _lists(v, f"{where}[{k}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _lists(v, f"{where}.{k}")


class _NoFill(TorchFunctionMode):
    """In-place fills (``normal_``, ``zero_``...) of meta tensors do nothing: there are no
    values to fill, and PyTorch's meta kernels for random fills load its compiler (over a
    second and ~70 MB) for nothing."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__"):
            t = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if getattr(t, "is_meta", False):
                return t
        return func(*args, **kwargs)


def check_against_weights(cfg: dict, cfg_path: Path, w_path: Path, build) -> None:
    """Refuse (`PakdError`) a config whose model would differ from the weights file in any
    tensor, before a real tensor is made. ``build(kind, schema_dict, arch)`` builds the
    model; it is called on the meta device, after every integer in the architecture and
    schema is bounded by the largest stored dimension (so even the meta build is small)."""
    shapes = weight_shapes(w_path)
    for key in ("kind", "arch", "schema"):
        if key not in cfg:
            raise PakdError(f"{cfg_path} has no {key!r} entry: it is not a model configuration "
                            f"pakd can read; {AGAIN}")
    if not isinstance(cfg["arch"], dict) or not isinstance(cfg["schema"], dict):
        raise PakdError(f"{cfg_path}: 'arch' and 'schema' must be JSON objects; {AGAIN}")
    largest = max((d for _, s in shapes.values() for d in s), default=0)
    tensors = len(shapes)
    for section in ("arch", "schema"):
        for where, v in _numbers(cfg[section], section):
            if not math.isfinite(v):
                raise PakdError(f"{cfg_path}: {where} = {v} is not a finite number: the "
                                f"configuration is damaged or was edited; {AGAIN}")
        for where, v in _ints(cfg[section], section):
            if v > largest + 1:
                raise PakdError(
                    f"{cfg_path}: {where} = {short(v, 30)} is larger than any tensor in "
                    f"{w_path} (largest dimension {largest:,}): the configuration does not "
                    f"describe these weights (edited?); restore it from the run, or {AGAIN}")
        for where, n in _lists(cfg[section], section):
            if n > max(64, tensors):
                raise PakdError(
                    f"{cfg_path}: {where} lists {n:,} entries for a weights file of "
                    f"{tensors} tensors: the configuration does not describe these weights; "
                    f"{AGAIN}")
    try:
        with torch.device("meta"), _NoFill():
            model = build(cfg["kind"], cfg["schema"], cfg["arch"])
    except PakdError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, IndexError,
            OverflowError, ZeroDivisionError, NotImplementedError) as e:
        raise PakdError(f"{cfg_path} is not a model configuration pakd can read "
                        f"({type(e).__name__}: {quote(str(e), 160)}); {AGAIN}") from None
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(shapes))
    extra = sorted(set(shapes) - set(want))
    if missing or extra:
        parts = ([f"missing from the weights: {', '.join(missing[:4])}"] if missing else []) + \
                ([f"not in the configuration: {', '.join(map(quote, extra[:4]))}"] if extra else [])
        raise PakdError(f"{w_path} does not hold the tensors its configuration {cfg_path} "
                        f"describes ({'; '.join(parts)}); {AGAIN}")
    for k, shape in want.items():       # shapes only: a dtype is converted when loading
        if shapes[k][1] != shape:
            raise PakdError(
                f"{cfg_path} describes {k} as {list(shape)}, but {w_path} stores "
                f"{list(shapes[k][1])}: the configuration does not describe these weights "
                f"(edited?); restore it from the run, or {AGAIN}")
