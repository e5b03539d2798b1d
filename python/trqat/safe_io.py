"""Files that load without running code: tensors, numbers, strings, lists and dicts only.

`torch.load(weights_only=True)` refuses pickled code, but on torch 1.13 it also refuses plain
Python floats (an optimizer's hyperparameters, RNG states). So `save` keeps the tensors as tensors
and writes everything else as one JSON text beside them; `load` reads it back with weights-only
loading on every torch version. Dicts with non-string keys (an optimizer's state, keyed by int),
tuples and non-finite floats survive the round trip.
"""
import errno
import io
import json
import os
import pickle
import tempfile
from typing import Any, BinaryIO, Dict, List, Optional, Union

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


class WriteError(OSError):
    """A file could not be written (a full disk, a quota, a read-only folder): names the file and the cause."""

    def __init__(self, path: str, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause), path)
        self.path = path

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0)
        return f"cannot write {self.path}: {self.strerror}" + (f" ({code})" if code else "")


def save(obj: Any, path: str) -> None:
    """Writes `obj` to `path` atomically: a temporary file in the same folder, fsync, rename.

    The bytes are made in memory first and then written by Python, so a full disk is an OSError
    naming the file (torch's own writer turns it into an unreadable RuntimeError, or aborts the
    process). On any failure the temporary is removed and `path` keeps its old content.
    """
    buffer = io.BytesIO()
    dump(obj, buffer)
    write_atomic(path, buffer.getbuffer())


def write_atomic(path: str, data: Union[bytes, memoryview]) -> None:
    """`data` to `path` atomically; a WriteError naming `path` on failure, with no temporary left."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise WriteError(path, e) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Optional[str]) -> None:
    try:
        if path is not None and os.path.exists(path):
            os.unlink(path)
    except OSError:
        pass  # a failing disk: nothing more can be done


def load(source: Union[str, BinaryIO], map_location: Any = "cpu") -> Any:
    """Reads what `save` wrote, with weights-only loading (no pickled code can run)."""
    try:
        raw: Dict[str, Any] = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # what weights-only loading refused: say why, not how to bypass it
        found = str(e).rpartition("WeightsUnpickler error:")[2].strip() or str(e)
        raise ValueError(f"holds pickled objects that would run code when loaded ({found}): refused; "
                         f"a trqat file holds tensors, numbers and strings only") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"not a {FORMAT} file (format {got!r})")
    return _decode(json.loads(raw["meta"]), list(raw["tensors"]))
