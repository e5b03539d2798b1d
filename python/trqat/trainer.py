"""The training state of one worker: data, model, optimizer, transition counter, checkpoints.

A step is split into the phases the protocol interleaves with messages:
count_transitions() -> forward_backward(t) -> set_lrs(...) -> optimizer_step().

Optimizer parameter groups, in this order:
- "quantized:<layer name>", one per quantized layer (in `layers` order): its latent weights, with
  weight decay optimizer.quantized_weight_decay. set_lrs gives them lr_quant (one number for all,
  or a list with one LR per layer).
- "other": the weights of full-precision conv/linear layers, with optimizer.weight_decay.
- "no_decay": everything else that trains (BN, biases, activation/output scales, shifts, PReLU
  slopes, DeiT's tokens and position embedding, and weight scales in baseline mode).

Loss: cross entropy (train.label_smoothing), or with a teacher (train.distill):
(1 - alpha) * CE(labels) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean.
Evaluation reports the plain cross entropy of the model's logits.
"""
import inspect
import os
import random
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import progress
from .data import build_data
from .models import build_fp_model, build_model, load_checkpoint_weights, model_image_size
from .quant import quantized_layers
from .transitions import TransitionCounter

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "worker.pt"
QUANT_PREFIX = "quantized:"  # name prefix of the per-layer quantized-weight groups (lr U(t) under TR)


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


def param_groups(model: nn.Module, weight_decay: float,
                 quantized_weight_decay: Optional[float] = None) -> List[Dict[str, Any]]:
    """One group per quantized layer ("quantized:<name>", its latent weight, quantized_weight_decay),
    then "other" (other conv/linear weights, weight_decay) and "no_decay" (everything else that
    trains). Frozen parameters are left out."""
    if quantized_weight_decay is None:
        quantized_weight_decay = weight_decay
    layers = quantized_layers(model)
    frozen = [n for n, m in layers if not m.weight.requires_grad]
    if frozen:  # their LRs and transitions would not line up with the controller's layer list
        raise ValueError(f"quantized layers with frozen weights (requires_grad=False): {', '.join(frozen[:5])}; "
                         "keep them in full precision (quant.full_precision) or unfreeze them")
    quant = {id(m.weight) for _, m in layers}
    fp = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))} - quant
    other: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in quant:
            (other if id(p) in fp else no_decay).append(p)
    groups = [{"params": [m.weight], "name": QUANT_PREFIX + n, "weight_decay": quantized_weight_decay}
              for n, m in layers]
    return groups + [{"params": other, "name": "other", "weight_decay": weight_decay},
                     {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}]


# Optimizers that cannot be driven by a plain step(): LBFGS needs a closure, SparseAdam sparse grads.
_UNSUPPORTED = {"lbfgs", "sparseadam"}


def optimizer_classes() -> Dict[str, type]:
    """Every usable torch.optim optimizer class, by lower-case name."""
    out = {}
    for name in dir(torch.optim):
        cls = getattr(torch.optim, name)
        if (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer
                and name.lower() not in _UNSUPPORTED):
            out[name.lower()] = cls
    return out


def build_optimizer(model: nn.Module, cfg: Dict[str, Any]) -> torch.optim.Optimizer:
    """optimizer.name: sgd (momentum, nesterov), adam/adamw (betas, eps), or any other torch.optim
    class by case-insensitive name (lr only). optimizer.kwargs are passed on and override those;
    kwargs.weight_decay overrides both weight decays (the groups carry their own)."""
    name = str(cfg["name"]).lower()
    classes = optimizer_classes()
    if name not in classes:
        raise ValueError(f"unknown optimizer.name {cfg['name']!r}; available: {', '.join(sorted(classes))}")
    cls = classes[name]
    kwargs = dict(cfg.get("kwargs") or {})
    if "weight_decay" in kwargs:
        wd = qwd = kwargs.pop("weight_decay")
    else:
        wd = cfg.get("weight_decay") or 0.0
        qwd = cfg.get("quantized_weight_decay")
        qwd = wd if qwd is None else qwd
    groups = param_groups(model, wd, qwd)
    args: Dict[str, Any] = {"lr": cfg["lr"]}
    if name == "sgd":
        args.update(momentum=cfg.get("momentum", 0.0), nesterov=cfg.get("nesterov", False))
    elif name in ("adam", "adamw"):
        args.update(betas=tuple(cfg.get("betas", (0.9, 0.999))), eps=cfg.get("eps", 1e-8))
    args.update(kwargs)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    accepted = [k for k in params if k not in ("self", "params")]
    for key in args:
        if not takes_any and key not in params:
            raise ValueError(f"optimizer {cls.__name__} ({name!r}) does not accept the keyword argument "
                             f"{key!r}; it takes: {', '.join(accepted)}")
    if "weight_decay" not in params and not takes_any and any(g["weight_decay"] for g in groups):
        warnings.warn(f"optimizer {cls.__name__} has no weight_decay: weight decay is not applied")
    try:
        return cls(groups, **args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"optimizer {cls.__name__} ({name!r}) rejected its arguments "
                         f"{', '.join(f'{k}={v!r}' for k, v in args.items())}: {e}") from e


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)),
    the KL summed over classes and averaged over the batch."""
    t = float(temperature)
    log_p_s = F.log_softmax(student.float() / t, dim=1)
    log_p_t = F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()
    loss = alpha * t * t * kl
    if alpha != 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student.float(), labels, label_smoothing=label_smoothing)
    return loss


class Trainer:
    def __init__(self, config: Dict[str, Any], device: torch.device):
        self.config, self.device = config, device
        seed = config["seed"]
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        if config["mode"] not in ("tr", "baseline"):
            raise ValueError(f"unknown mode {config['mode']!r}; available: tr, baseline")
        self.data = build_data(config["data"], seed, device)
        num_classes = config["model"]["num_classes"]
        data_classes = getattr(self.data, "num_classes", None)
        if data_classes is not None and data_classes > num_classes:
            raise ValueError(f"data.name {config['data']['name']!r} has {data_classes} classes but "
                             f"model.num_classes is {num_classes}")
        self.model = build_model(config).to(device)
        self.layers = quantized_layers(self.model)
        for _, m in self.layers:  # TR: levels may change only through weight updates
            m.freeze_weight_scale(config["mode"] == "tr")
        self.optimizer = build_optimizer(self.model, config["optimizer"])
        tcfg = config.get("train") or {}
        self.grad_clip: Optional[float] = tcfg.get("grad_clip")
        self.label_smoothing = float(tcfg.get("label_smoothing") or 0.0)
        self.distill = dict(tcfg.get("distill") or {})
        self.teacher = self._build_teacher(config) if self.distill.get("teacher_checkpoint") else None
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

    # Looked up on every use: optimizer.load_state_dict replaces the group dicts, so cached
    # references would silently stop receiving the controller's LRs after a resume.
    @property
    def quant_groups(self) -> List[Dict[str, Any]]:
        return [g for g in self.optimizer.param_groups if g["name"].startswith(QUANT_PREFIX)]

    @property
    def other_groups(self) -> List[Dict[str, Any]]:
        return [g for g in self.optimizer.param_groups if not g["name"].startswith(QUANT_PREFIX)]

    def layer_info(self) -> List[Dict[str, Any]]:
        return [{"name": n, "kind": m.kind, "numel": m.weight.numel(), "weight_bits": m.weight_bits,
                 "act_bits": m.act_bits} for n, m in self.layers]

    def param_counts(self) -> Dict[str, int]:
        """Element counts: latent quantized weights, and every other parameter (trained or not)."""
        quant = sum(m.weight.numel() for _, m in self.layers)
        return {"quantized": quant, "other": sum(p.numel() for p in self.model.parameters()) - quant}

    def _build_teacher(self, config: Dict[str, Any]) -> nn.Module:
        """The full-precision teacher: distill.teacher_model (default model.name) with the model's
        in/out sizes, weights from distill.teacher_checkpoint, eval mode, frozen."""
        mcfg = config["model"]
        name = self.distill.get("teacher_model") or mcfg["name"]
        teacher = build_fp_model(name, mcfg["in_channels"], mcfg["num_classes"], model_image_size(config))
        load_checkpoint_weights(teacher, self.distill["teacher_checkpoint"], "train.distill.teacher_checkpoint")
        teacher.eval().requires_grad_(False)
        return teacher.to(self.device)

    def set_lrs(self, lr_quant: Union[float, Sequence[float]], lr_other: float) -> None:
        """lr_quant: one LR for every quantized layer, or a list with one per layer (layers order)."""
        quant_groups = self.quant_groups
        if isinstance(lr_quant, (list, tuple)):
            if len(lr_quant) != len(quant_groups):
                raise ValueError(f"lr_quant has {len(lr_quant)} entries but the model has "
                                 f"{len(quant_groups)} quantized layers")
            for group, lr in zip(quant_groups, lr_quant):
                group["lr"] = float(lr)
        else:
            for group in quant_groups:
                group["lr"] = float(lr_quant)
        for group in self.other_groups:
            group["lr"] = float(lr_other)

    def count_transitions(self) -> Optional[List[int]]:
        """Per-layer level changes since the previous call (None the first time)."""
        return self.counter.update()

    def forward_backward(self, step: int) -> None:
        x, y = self.data.train_batch(step)
        with torch.autocast("cuda", enabled=self.amp):
            logits = self.model(x)
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(x)
        if self.teacher is not None:
            loss = distillation_loss(logits, teacher_logits, y, self.distill.get("temperature", 1.0),
                                     self.distill.get("alpha", 1.0), self.label_smoothing)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # kept as tensors: reading them now would wait for the device
        self._stats = (loss.detach(), (logits.argmax(1) == y).sum(), len(y))
        self._pending = step

    def optimizer_step(self) -> None:
        if self._pending is None:
            raise RuntimeError("optimizer_step() needs a forward_backward() first")
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the loss-scaled ones
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            # the norm before clipping, kept as a tensor (reading it would wait for the device)
            self.last_grad_norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
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
                progress.report("eval", samples, len(self.data.test))
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
