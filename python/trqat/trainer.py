"""The training state of one worker rank: data, model, optimizer, transition counter, checkpoints.

A step is split into the phases the protocol interleaves with messages:
begin_step() -> forward_backward(t, after_forward) -> set_lrs(...) -> optimizer_step(); the worker sends
the step's report from `after_forward`, so the controller decides while backward runs.

Data parallelism: with several ranks (torch.distributed initialised by the worker), the model is
wrapped in DistributedDataParallel after quantization; every rank trains on its share of the global
batch (data.py), evaluates its share of the test set (the totals are reduced), and rank 0 writes the
checkpoint, which every rank loads. `train.accumulate_steps` splits a rank's batch into micro-batches
whose gradients are summed before the one optimizer step (DDP synchronises only the last).

Optimizer parameter groups and who gets which LR: groups.py; the optimizer: optimizer.py; what a
checkpoint holds is `state()`, how it is written and read: checkpoint.py.

Loss: cross entropy (train.label_smoothing), or with a teacher (train.distill):
(1 - alpha) * CE(labels) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean.
Evaluation reports the plain cross entropy of the model's logits.

On CUDA the step never waits for the device except for the transition counts, which are copied to
pinned memory asynchronously while the forward pass is queued; the loss reaches the host one step
late. (fp16 AMP's GradScaler checks for infs with one more synchronisation; bf16 needs no scaler.)
"""
import contextlib
import os
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint, distributed, progress
from .checkpoint import load_checkpoint_weights
from .data import build_data
from .distributed import Ranks
from .groups import apply_lrs, quant_layer_count
from .log import logger
from .models import build_fp_model, build_model
from .optimizer import build_optimizer
from .quant import quantized_layers
from .scales import configure_scales
from .transitions import TransitionCounter

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(spec: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:<local rank> if CUDA is available else cpu; "cuda" -> cuda:<local rank>."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"worker.device is {spec!r} but CUDA is not available on this machine "
                             f"(set worker.device=cpu or auto)")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def _grad_scaler(enabled: bool) -> Any:
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3; torch.cuda.amp.GradScaler is deprecated there
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


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
    def __init__(self, config: Dict[str, Any], device: torch.device, ranks: Ranks = Ranks()):
        self.config, self.device, self.ranks = config, device, ranks
        seed = config["seed"]
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        if config["mode"] not in ("tr", "baseline"):
            raise ValueError(f"unknown mode {config['mode']!r}; available: tr, baseline")
        wcfg, tcfg = config["worker"], config["train"]
        self.accumulate = int(tcfg["accumulate_steps"])
        distributed.batch_share(config["data"]["batch_size"], ranks.world_size, self.accumulate)
        progress.phase("data")
        self.data = build_data(config["data"], seed, device, ranks)
        num_classes = config["model"]["num_classes"]
        data_classes = getattr(self.data, "num_classes", None)
        if data_classes is not None and data_classes > num_classes:
            raise ValueError(f"data.name {config['data']['name']!r} has {data_classes} classes but "
                             f"model.num_classes is {num_classes}")
        progress.phase("model")
        self.model = build_model(config).to(device)
        configure_scales(self.model, config["quant"])
        if wcfg["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        if wcfg["sync_bn"]:
            if device.type != "cuda":
                raise ValueError("worker.sync_bn needs CUDA (SyncBatchNorm has no CPU kernel); set worker.sync_bn=false")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.layers = quantized_layers(self.model)
        for _, m in self.layers:  # TR: levels may change only through weight updates
            m.freeze_weight_scale(config["mode"] == "tr")
        self.optimizer = build_optimizer(self.model, config["optimizer"])
        self.net = self._wrap(self.model, wcfg)
        self.grad_clip: Optional[float] = tcfg["grad_clip"]
        self.label_smoothing = float(tcfg["label_smoothing"])
        self.distill = dict(tcfg["distill"])
        self.teacher = self._build_teacher(config) if self.distill["teacher_checkpoint"] else None
        self.counter = TransitionCounter([m for _, m in self.layers])
        amp = wcfg["amp"]
        if amp != "off" and device.type != "cuda":
            logger.warning("worker.amp=%s is ignored on the CPU (mixed precision here is for CUDA)", amp)
            amp = "off"
        self.amp_dtype: Optional[torch.dtype] = AMP_DTYPES.get(amp)
        self.scaler = _grad_scaler(self.amp_dtype is torch.float16)  # bf16 has fp32's range: no scaling
        self.step = 0  # the next step to run
        self._stats: Optional[Tuple[torch.Tensor, torch.Tensor, int]] = None
        self._pending: Optional[int] = None  # step whose gradients are ready for optimizer_step
        self.model.train()

    def _wrap(self, model: nn.Module, wcfg: Dict[str, Any]) -> nn.Module:
        """What forward passes go through: DistributedDataParallel with several ranks, torch.compile on request."""
        net = model
        if distributed.active():
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=True)
        if wcfg["compile"]:
            if hasattr(torch, "compile"):
                net = torch.compile(net)  # type: ignore[assignment]
            else:
                logger.warning("worker.compile needs torch >= 2.0 (this is %s): not compiled", torch.__version__)
        return net

    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

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
        teacher = build_fp_model(self.distill["teacher_model"], mcfg["in_channels"], mcfg["num_classes"], mcfg["image_size"])
        load_checkpoint_weights(teacher, self.distill["teacher_checkpoint"], "train.distill.teacher_checkpoint")
        teacher.eval().requires_grad_(False)
        return teacher.to(self.device)

    def set_lrs(self, lr_quant: Union[float, Sequence[float]], lr_other: float) -> None:
        """lr_quant: one LR for every quantized layer, or a list with one per layer (layers order)."""
        if isinstance(lr_quant, (list, tuple)) and len(lr_quant) != quant_layer_count(self.optimizer):
            raise ValueError(f"lr_quant has {len(lr_quant)} entries but the model has "
                             f"{quant_layer_count(self.optimizer)} quantized layers")
        apply_lrs(self.optimizer, lr_quant, lr_other)

    def begin_step(self) -> "StepReport":
        """What a step reports before its forward pass: the per-layer transitions caused by the last
        update (None the first time) and the statistics of the last step, in one small copy to the
        host that runs in the background on CUDA until `.result()`."""
        counts = self.counter.update_tensor()
        stats, self._stats = self._stats, None
        parts = [] if counts is None else [counts.double()]
        if stats is not None:
            parts.append(torch.stack([stats[0].double(), stats[1].double()]))
        if not parts:
            return StepReport(None, None, None)
        return StepReport(HostCopy(torch.cat([p.to(self.device) for p in parts])), None if counts is None else len(counts),
                          None if stats is None else stats[2])

    def count_transitions(self) -> Optional[List[int]]:
        """Per-layer level changes since the previous call (None the first time)."""
        return self.counter.update()

    def forward_backward(self, step: int, after_forward: Optional[Callable[[], None]] = None) -> None:
        """The step's gradients; `after_forward` is called once, between the first micro-batch's forward
        and its backward."""
        x, y = self.data.train_batch(step)
        if self.model_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        chunks = list(zip(x.chunk(self.accumulate), y.chunk(self.accumulate)))
        for i, (xb, yb) in enumerate(chunks):
            # DDP averages gradients over ranks once per optimizer step: on the last micro-batch
            sync = i == len(chunks) - 1 or not isinstance(self.net, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.net.no_sync():  # type: ignore[operator]
                loss, logits = self._loss(xb, yb)
                if i == 0 and after_forward is not None:
                    after_forward()
                self.scaler.scale(loss / len(chunks)).backward()
            loss_sum += loss.detach() / len(chunks)
            correct += (logits.argmax(1) == yb).sum()
        # kept as tensors: reading them now would wait for the device
        self._stats = (loss_sum, correct, len(y))
        self._pending = step

    @property
    def model_channels_last(self) -> bool:
        return bool(self.config["worker"]["channels_last"])

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            logits = self.net(x)
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(x)
        if self.teacher is not None:
            loss = distillation_loss(logits, teacher_logits, y, self.distill["temperature"],
                                     self.distill["alpha"], self.label_smoothing)
        else:
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        return loss, logits

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

    def take_stats(self) -> Optional[Dict[str, Any]]:
        """{loss, correct, samples} of the last forward_backward as Python numbers, once (then None)."""
        if self._stats is None:
            return None
        loss, correct, samples = self._stats
        self._stats = None
        return {"loss": loss.item(), "correct": int(correct.item()), "samples": samples}

    @torch.no_grad()
    def evaluate(self) -> Dict[str, Any]:
        """Top-1 (percent), mean loss and sample count on the test set, in eval mode: each rank its
        share, the totals summed over ranks."""
        distributed.broadcast_buffers(self.model)  # rank 0's BN statistics on every rank
        was_training = self.model.training
        self.model.eval()
        totals = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss sum, correct, samples
        seen = 0
        try:
            for x, y in self.data.test_batches():
                if self.model_channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    logits = self.model(x)
                totals[0] += F.cross_entropy(logits.float(), y, reduction="sum")
                totals[1] += (logits.argmax(1) == y).sum()
                totals[2] += len(y)
                seen += len(y) * self.ranks.world_size  # every rank has an equal share
                progress.report("eval", min(seen, len(self.data.test)), len(self.data.test))
        finally:
            self.model.train(was_training)
        loss_sum, correct, samples = distributed.total(totals).tolist()
        n = max(samples, 1)
        return {"top1": 100.0 * correct / n, "loss": loss_sum / n, "samples": int(samples)}

    def state(self, step: int, rng: List[Dict[str, Any]]) -> Dict[str, Any]:
        """What worker.pt holds (checkpoint.py writes it, with its format)."""
        return {
            "step": step,
            "world_size": self.ranks.world_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "counter": self.counter.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
        }

    def save(self, path_dir: str, step: Optional[int] = None, create: bool = True) -> Optional[str]:
        """Rank 0 writes path_dir/worker.pt atomically, with every rank's RNG states; the other ranks
        hand theirs over and return None. create=False: path_dir must already exist."""
        distributed.broadcast_buffers(self.model)
        rng = distributed.gather(checkpoint.rng_state(self.device))
        if rng is None:
            return None
        return checkpoint.write(path_dir, self.state(self.step if step is None else step, rng), create)

    def load(self, path_dir: str) -> int:
        """Restore everything from path_dir/worker.pt; return the step to run next."""
        ckpt = checkpoint.read(path_dir)
        try:
            self._restore(ckpt)
        except Exception as e:
            raise RuntimeError(f"checkpoint {os.path.join(path_dir, checkpoint.CHECKPOINT_FILE)} does not match "
                               f"this run: {e}") from e
        return self.step

    def _restore(self, ckpt: Dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.counter.load_state_dict(ckpt["counter"])
        if ckpt["scaler"] and self.scaler.is_enabled():  # an empty state comes from a run without fp16
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        if len(rng) != self.ranks.world_size:
            logger.warning("the checkpoint was written by %d rank(s), this run has %d: the data are the same, but "
                           "random numbers outside the data (e.g. dropout) will differ from an uninterrupted run",
                           len(rng), self.ranks.world_size)
        checkpoint.set_rng_state(rng[min(self.ranks.rank, len(rng) - 1)], self.device)
        self.step = int(ckpt["step"])
        self._stats = None


class HostCopy:
    """A small device tensor on its way to pinned host memory (CUDA), or already on the host."""

    def __init__(self, tensor: torch.Tensor):
        self._event: Any = None
        if tensor.device.type == "cuda":
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self.host = tensor

    def result(self) -> List[float]:
        if self._event is not None:
            self._event.synchronize()  # waits for this copy only, not for work queued after it
            self._event = None
        return self.host.tolist()


class StepReport:
    """A step's report on its way to the host: (per-layer counts or None, last step's stats or None)."""

    def __init__(self, copy: Optional[HostCopy], n_counts: Optional[int], samples: Optional[int]):
        self.copy, self.n_counts, self.samples = copy, n_counts, samples
        self._result: Optional[Tuple[Optional[List[int]], Optional[Dict[str, Any]]]] = None

    def result(self) -> Tuple[Optional[List[int]], Optional[Dict[str, Any]]]:
        """(counts, last), read once and kept."""
        if self._result is None:
            self._result = self._read()
        return self._result

    def _read(self) -> Tuple[Optional[List[int]], Optional[Dict[str, Any]]]:
        values = self.copy.result() if self.copy is not None else []
        n = self.n_counts or 0
        counts = None if self.n_counts is None else [int(v) for v in values[:n]]
        last = None
        if self.samples is not None:
            last = {"loss": float(values[n]), "correct": int(values[n + 1]), "samples": self.samples}
        return counts, last
