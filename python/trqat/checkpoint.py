"""Checkpoints, read and written in one place (files that load without running code: safe_io.py).

- A managed run's `worker.pt` (`CHECKPOINT_FILE`, format `CHECKPOINT_FORMAT`): the model, optimizer,
  transition counter, grad scaler and every rank's RNG states. `write` puts it in a folder
  atomically; `read` checks its format. The Trainer decides what goes in (`Trainer.state`).
- Full-precision weights from elsewhere (`model.init_checkpoint`, a distillation teacher):
  `read_state_dict` and `load_checkpoint_weights`, which also read a trqat `worker.pt`.
"""
import os
import random
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn as nn

from . import safe_io

CHECKPOINT_FORMAT = 2
CHECKPOINT_FILE = "worker.pt"


class CheckpointProblem(RuntimeError):
    """The checkpoint to resume from cannot be read (damaged, crafted, another format): the controller falls back to an earlier one."""


def write(path_dir: str, state: Dict[str, Any], create: bool = True) -> str:
    """Write `state` as path_dir/worker.pt atomically (temp file in the same folder, fsync, rename).

    create=False: path_dir must exist (the controller's staging folder: once it is removed, the save
    was abandoned, and recreating it would leave a stray folder in the run).
    """
    if create:
        os.makedirs(path_dir, exist_ok=True)
    final = os.path.join(path_dir, CHECKPOINT_FILE)
    safe_io.save({"format": CHECKPOINT_FORMAT, **state}, final)
    _fsync_dir(path_dir)
    return final


def read(path_dir: str) -> Dict[str, Any]:
    """The state in path_dir/worker.pt, after checking it is there, readable and of this format."""
    path = os.path.join(path_dir, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = safe_io.load(path)  # no code runs from a checkpoint
    except Exception as e:
        raise CheckpointProblem(f"worker.pt is unreadable or corrupt: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointProblem(f"worker.pt has format {got!r}; this trqat reads format {CHECKPOINT_FORMAT}")
    return ckpt


def rng_state(device: torch.device) -> Dict[str, Any]:
    """This process's RNG states, in types that weights-only loading reads (tensors, numbers, strings)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def _fsync_dir(path_dir: str) -> None:
    try:
        fd = os.open(path_dir, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


# --- full-precision weights from elsewhere ---------------------------------------------------
QUANTIZER_KEYS = ("weight_scale", "act_scale", "act_initialized", "output_scale")


def read_state_dict(path: str, what: str = "model.init_checkpoint") -> Dict[str, torch.Tensor]:
    """The full-precision state dict in `path`: a raw state dict, a dict with a "model" or
    "state_dict" entry, or a trqat worker.pt (its model state, quantizer-only keys stripped).
    Read with weights-only loading (no pickled code runs). A common "module." (DataParallel,
    DistributedDataParallel) or "_orig_mod." (torch.compile) prefix is removed, also both in either order."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path}")
    try:  # weights-only: a file someone else made must not run code here
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise ValueError(f"{what}: {path} holds more than tensors (pickled objects that would run code when "
                             f"loaded); save the weights alone: torch.save(model.state_dict(), path)") from None
        raise ValueError(f"{what}: {path} is not a readable torch file: {e}") from e
    if isinstance(obj, dict) and obj.get("format") == safe_io.FORMAT:  # a trqat worker.pt
        obj = safe_io.load(path)
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise ValueError(f"{what}: {path} holds no state dict (expected a dict of tensors, or one under "
                         f"'model' or 'state_dict')")
    state = {k: v for k, v in obj.items() if k.rpartition(".")[2] not in QUANTIZER_KEYS}
    while state:  # torch.compile(DDP(model)) saves "_orig_mod.module.", DDP(torch.compile(model)) the reverse
        prefix = next((p for p in ("module.", "_orig_mod.") if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_checkpoint_weights(model: nn.Module, path: str, what: str = "model.init_checkpoint") -> None:
    """Load a full-precision state dict into the (not yet quantized) `model`, strictly: every key
    present with the same shape, no extra keys. The error lists the first mismatches."""
    state = read_state_dict(path, what)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        def first(items: List[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        parts = [f"missing keys: {first(missing)}" if missing else "",
                 f"unexpected keys: {first(unexpected)}" if unexpected else "",
                 f"shape mismatches: {first(shapes)}" if shapes else ""]
        raise ValueError(f"{what}: {path} does not match model {type(model).__name__}: "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict(state)
