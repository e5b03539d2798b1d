"""Files that load without running code: tensors, numbers, strings, lists and dicts only.

`torch.load(weights_only=True)` refuses pickled code, but on torch 1.13 it also refuses plain
Python floats (an optimizer's hyperparameters, RNG states). So `save` keeps the tensors as tensors
and writes everything else as one JSON text beside them; `load` reads it back with weights-only
loading on every torch version. Dicts with non-string keys (an optimizer's state, keyed by int),
tuples and non-finite floats survive the round trip.
"""
import json
import os
import tempfile
from typing import Any, BinaryIO, Dict, List, Union

import torch

FORMAT = "trqat-safe-1"


def _encode(value: Any, tensors: List[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"__tensor__": len(tensors) - 1}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and "__tensor__" not in value and "__items__" not in value:
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a trqat file (tensors, numbers, strings, lists and dicts only)")


def _decode(value: Any, tensors: List[torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__items__" in value:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def dump(obj: Any, f: BinaryIO) -> None:
    tensors: List[torch.Tensor] = []
    meta = json.dumps(_encode(obj, tensors))
    torch.save({"format": FORMAT, "meta": meta, "tensors": tensors}, f)


def save(obj: Any, path: str) -> None:
    """Writes `obj` to `path` atomically: a temporary file in the same folder, fsync, rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(source: Union[str, BinaryIO], map_location: Any = "cpu") -> Any:
    """Reads what `save` wrote, with weights-only loading (no pickled code can run)."""
    raw: Dict[str, Any] = torch.load(source, map_location=map_location, weights_only=True)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"not a {FORMAT} file (format {got!r})")
    return _decode(json.loads(raw["meta"]), list(raw["tensors"]))
