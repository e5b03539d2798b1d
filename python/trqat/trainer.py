"""The training state of one worker: data, model, optimizer, transition counter, checkpoints.

A step is split into the phases the protocol interleaves with messages:
count_transitions() -> forward_backward(t) -> set_lrs(...) -> optimizer_step().
"""
import os
import random
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import build_data
from .models import build_model
from .quant import quantized_layers
from .transitions import TransitionCounter

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "worker.pt"
QUANT_GROUP = 0  # index of the quantized-weight parameter group (its lr is U(t) under TR)


def resolve_device(spec: str = "auto") -> torch.device:
    """"auto" -> cuda:<current> if available else cpu; "cuda" -> cuda:<current>."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"worker.device is {spec!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def _grad_scaler(enabled: bool) -> Any:
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3; torch.cuda.amp.GradScaler is deprecated there
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Group 0: latent weights of quantized layers; 1: other conv/linear weights (both decayed);
    2: everything else that trains (BN, biases, scales), without decay. Frozen parameters are left out."""
    quant = {id(m.weight) for _, m in quantized_layers(model)}
    fp = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))} - quant
    groups: List[List[nn.Parameter]] = [[], [], []]
    for p in model.parameters():
        if p.requires_grad:
            groups[0 if id(p) in quant else 1 if id(p) in fp else 2].append(p)
    names, decays = ("quantized", "other", "no_decay"), (weight_decay, weight_decay, 0.0)
    return [{"params": g, "name": n, "weight_decay": d} for g, n, d in zip(groups, names, decays)]


def build_optimizer(model: nn.Module, cfg: Dict[str, Any]) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg["weight_decay"])
    name = cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    raise ValueError(f"unknown optimizer.name {name!r}; available: sgd, adam, adamw")


class Trainer:
    def __init__(self, config: Dict[str, Any], device: torch.device):
        self.config, self.device = config, device
        seed = config["seed"]
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        self.data = build_data(config["data"], seed, device)
        self.model = build_model(config).to(device)
        self.layers = quantized_layers(self.model)
        if config["mode"] not in ("tr", "baseline"):
            raise ValueError(f"unknown mode {config['mode']!r}; available: tr, baseline")
        for _, m in self.layers:  # TR: levels may change only through weight updates
            m.freeze_weight_scale(config["mode"] == "tr")
        self.optimizer = build_optimizer(self.model, config["optimizer"])
        self.counter = TransitionCounter([m for _, m in self.layers])
        self.amp = bool(config["worker"].get("amp", False))
        if self.amp and device.type != "cuda":
            warnings.warn("worker.amp is ignored on CPU (mixed precision needs CUDA)")
            self.amp = False
        self.scaler = _grad_scaler(self.amp)
        self.step = 0  # the next step to run
        self._stats: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None
        self._pending: Optional[int] = None  # step whose gradients are ready for optimizer_step
        self.model.train()

    def layer_info(self) -> List[Dict[str, Any]]:
        return [{"name": n, "kind": m.kind, "numel": m.weight.numel(), "weight_bits": m.weight_bits,
                 "act_bits": m.act_bits} for n, m in self.layers]

    def param_counts(self) -> Dict[str, int]:
        """Element counts: latent quantized weights, and every other parameter (trained or not)."""
        quant = sum(m.weight.numel() for _, m in self.layers)
        return {"quantized": quant, "other": sum(p.numel() for p in self.model.parameters()) - quant}

    def set_lrs(self, lr_quant: float, lr_other: float) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = lr_quant if i == QUANT_GROUP else lr_other

    def count_transitions(self) -> Optional[List[int]]:
        """Per-layer level changes since the previous call (None the first time)."""
        return self.counter.update()

    def forward_backward(self, step: int) -> None:
        x, y = self.data.train_batch(step)
        with torch.autocast("cuda", enabled=self.amp):
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # kept as tensors: reading them now would wait for the device
        self._stats = (loss.detach(), (logits.argmax(1) == y).sum(), len(y))
        self._pending = step

    def optimizer_step(self) -> None:
        if self._pending is None:
            raise RuntimeError("optimizer_step() needs a forward_backward() first")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step, self._pending = self._pending + 1, None

    def last_stats(self) -> Tuple[Optional[float], Optional[int], Optional[int]]:
        """(mean loss, correct, samples) of the last forward_backward, as Python numbers."""
        if self._stats is None:
            return None, None, None
        loss, correct, samples = self._stats
        return loss.item(), int(correct.item()), samples

    @torch.no_grad()
    def evaluate(self) -> Dict[str, Any]:
        """Top-1 (percent), mean loss and sample count on the test set, in eval mode."""
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        samples = 0
        try:
            for x, y in self.data.test_batches():
                with torch.autocast("cuda", enabled=self.amp):
                    logits = self.model(x)
                loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
                samples += len(y)
        finally:
            self.model.train(was_training)
        n = max(samples, 1)
        return {"top1": 100.0 * correct.item() / n, "loss": loss_sum.item() / n, "samples": samples}

    def state(self, step: int) -> Dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counter": self.counter.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "numpy": np_state,
                "python": random.getstate(),
            },
        }

    def save(self, path_dir: str, step: Optional[int] = None) -> str:
        """Write path_dir/worker.pt atomically (temp file in the same folder, fsync, rename)."""
        os.makedirs(path_dir, exist_ok=True)
        final = os.path.join(path_dir, CHECKPOINT_FILE)
        fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT_FILE}.", dir=path_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(self.state(self.step if step is None else step), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            os.unlink(tmp)
            raise
        _fsync_dir(path_dir)
        return final

    def load(self, path_dir: str) -> int:
        """Restore everything from path_dir/worker.pt; return the step to run next."""
        path = os.path.join(path_dir, CHECKPOINT_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            ckpt = _torch_load(path)
        except Exception as e:
            raise RuntimeError(f"checkpoint {path} is unreadable or corrupt: {e}") from e
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise RuntimeError(f"checkpoint {path} has format {got!r}, expected {CHECKPOINT_FORMAT}")
        try:
            self._restore(ckpt)
        except Exception as e:
            raise RuntimeError(f"checkpoint {path} does not match this run: {e}") from e
        return self.step

    def _restore(self, ckpt: Dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.counter.load_state_dict(ckpt["counter"])
        if ckpt["scaler"] and self.amp:  # an empty state comes from a run without AMP
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.step = int(ckpt["step"])
        self._stats = None


def _torch_load(path: str) -> Any:
    # Our own file holds numpy/python RNG states, which torch>=2.6's weights_only default refuses.
    return torch.load(path, map_location="cpu", weights_only=False)


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
