"""Drive your own PyTorch training loop with TR scheduling from a running trqat controller.

The controller (`trqat run -- python train.py`, or `trqat serve`) owns the schedule: R(t), K(t),
U(t), the ordinary LR schedule, and the run's record (metrics.jsonl, run.json, summary.json). The
client, inside your loop, counts the weight transitions of your quantized model, hands them over,
and sets the learning rates it gets back on your own optimizer:

    from trqat.adapt import quantize
    from trqat.client import Client

    model = quantize(MyNet(), weight_bits=2, act_bits=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    client = Client(model=model, optimizer=optimizer, total_steps=10_000)
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        client.step(loss)            # transitions -> controller; its LRs -> your optimizer
        optimizer.step()
    client.close()

Protocol: docs/protocol.md, "Client sessions". Guide: docs/plugin.md.
"""
import atexit
import math
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from . import diagnostics
from . import protocol as P
from .distributed import Ranks, ranks_from_env
from .groups import apply_lrs, split_param_groups
from .log import warn_user
from .quant import QuantLayer, quantized_layers
from .step_order import StepOrder
from .transitions import TransitionCounter, unwrap
from .transport import Credentials, Gone, Rejected, RunOver, Session, TransportError, Unreachable, env_ms

__all__ = ["Client", "LRs", "split_param_groups", "ClientError", "ControllerUnreachable", "Rejected",
           "ControllerGone", "RunOver"]

STATE_FORMAT = 1
# torch.optim class name (lower case) -> config optimizer.name, for the names whose defaults differ
_TORCH_OPTIMIZERS = {"sgd", "adam", "adamw"}

# The client's errors are the transport's, under the names a script catches.
ClientError = TransportError
ControllerUnreachable = Unreachable
ControllerGone = Gone


@dataclass
class LRs:
    """What the controller decided for one step (the LRs are already set on the optimizer), with
    the schedule's numbers for your own logger: k (this step's measured transition rate, None on
    the first step), K (running TR), R (target TR) and U (TALR); R and U are None in baseline mode."""

    step: int
    lr_quant: Union[float, List[float]]
    lr_other: float
    stop: bool
    k: Optional[float] = None
    K: Optional[float] = None
    R: Optional[float] = None
    U: Optional[float] = None


def _number(value: Any) -> Optional[float]:
    if value is None:
        return None
    v = float(value.detach().float().mean().item()) if isinstance(value, torch.Tensor) else float(value)
    return v if math.isfinite(v) else None


def _count(value: Any) -> Optional[int]:
    if value is None:
        return None
    return int(value.item()) if isinstance(value, torch.Tensor) else int(value)


class Client:
    """A session with a running trqat controller, inside your own training loop.

    Construct it after quantizing the model and building the optimizer; it connects, gets the run
    config, keeps the weight scales frozen under TR scheduling (baseline mode trains them), and
    splits the optimizer's groups (split_param_groups). Then, once per optimizer step, either

        loss.backward(); client.step(loss); optimizer.step()

    or, to overlap the round trip with forward/backward,

        client.step_begin(); loss = ...; loss.backward(); client.step_end(loss); optimizer.step()

    Data parallel (DDP): every rank makes its own Client with the same model; the controller decides
    each step once for all ranks. DistributedDataParallel may wrap the model before or after the
    Client under TR scheduling; in baseline mode (weight scales train) build it after.

    Arguments (all optional except model and optimizer):
    - endpoint: the controller's ZeroMQ endpoint; default $TRQAT_ENDPOINT (set by `trqat run`), or
      the run's auth file ($TRQAT_AUTH_FILE, printed by `trqat serve`).
    - total_steps: the run length in optimizer steps, used when the config's train.steps is null.
    - steps_per_epoch: optimizer steps per epoch (e.g. len(loader)); without total_steps, the run
      is train.epochs epochs of it. Also makes the metrics' `epoch` column real epochs.
    - state: a dict from client.state_dict() to continue a run from your own checkpoint.
    - set_other_lr: False leaves the LRs of the groups that are not quantized weights to you.
    - rank / world_size: default from the environment ($RANK/$WORLD_SIZE as torchrun sets them).
    - connect_timeout: seconds to wait for the controller's answer (default 30,
      $TRQAT_CONNECT_TIMEOUT_MS).
    """

    def __init__(self, endpoint: Optional[str] = None, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 total_steps: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                 state: Optional[Dict[str, Any]] = None, set_other_lr: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 connect_timeout: Optional[float] = None):
        for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self._wrapped = model is not unwrap(model)
        self.model = unwrap(model)
        self.optimizer = optimizer
        self.set_other_lr = set_other_lr
        named = quantized_layers(self.model)
        if not named:
            raise ValueError("the model has no quantized layers: quantize it first (trqat.quantize(model))")
        self.layer_names = [n for n, _ in named]
        self.layers: List[QuantLayer] = [m for _, m in named]
        env = ranks_from_env()
        ranks = Ranks(env.rank if rank is None else rank, env.world_size if world_size is None else world_size, env.local_rank)
        self.rank, self.world_size = ranks.rank, ranks.world_size
        self.run_dir = os.environ.get("TRQAT_RUN_DIR")
        self._user_total, self._user_spe = total_steps, steps_per_epoch
        self.counter = TransitionCounter(self.layers)
        self.config: Dict[str, Any] = {}
        self.total_steps: Optional[int] = None
        self.steps_per_epoch: Optional[int] = None
        self.current_step = 0  # the next step to run (a loaded state's step from construction on)
        self.should_stop = False
        self.lr_quant: Union[None, float, List[float]] = None
        self.lr_other: Optional[float] = None
        self.controller_state: Optional[Dict[str, Any]] = None
        # the per-layer transitions this process measured for the current step (layer_names order)
        self.last_counts: Optional[List[int]] = None
        self._loaded_step: Optional[int] = None
        self._started = self._begun = self._closed = self._stepped = False
        self._order = StepOrder(self.layers)  # warnings for optimizer.step() out of order
        self._stats: Dict[str, Any] = {"loss": None, "correct": None, "samples": None}
        credentials = Credentials.from_env(endpoint)
        self.endpoint = credentials.endpoint
        # The heartbeat thread only records that the controller is gone; the user's loop raises it.
        self._session = Session(P.ROLE_CLIENT, ranks, credentials, heartbeat_s=credentials.heartbeat_s,
                                timeout_s=credentials.controller_timeout_s)
        if connect_timeout is None:
            connect_timeout = env_ms("TRQAT_CONNECT_TIMEOUT_MS", 30000)
        try:
            self.config, _ = self._session.hello(self._device(), connect_timeout)
            self._configure(state)
        except BaseException:
            self._session.close()
            raise
        _OPEN.add(self)

    # --- setup -----------------------------------------------------------------------------
    def _configure(self, state: Optional[Dict[str, Any]]) -> None:
        cfg = self.config
        train_scales = cfg["mode"] == "baseline"  # TR: levels may change only through weight updates (method.md)
        changes = [m for m in self.layers if m.weight_scale.requires_grad != train_scales]
        if changes and self._wrapped:
            raise ClientError("baseline mode trains the weight scales, which DistributedDataParallel was built without: "
                              "build DistributedDataParallel after trqat.client.Client(...)")
        for m in changes:
            m.freeze_weight_scale(not train_scales)
        self._check_optimizer(cfg["optimizer"])
        split_param_groups(self.optimizer, self.model)
        train = cfg["train"]
        steps = train["steps"]
        if steps is not None and self._user_total is not None and steps != self._user_total:
            warn_user(f"trqat: the controller's config sets train.steps = {steps}; it wins over "
                      f"total_steps={self._user_total}")
        total = steps if steps is not None else self._user_total
        if total is None and self._user_spe is not None:
            total = max(1, round(float(train["epochs"]) * self._user_spe))
        if total is None:
            raise ClientError(
                "the run length is unknown: set train.steps in the controller's config (e.g. "
                "`trqat run --set train.steps=N -- ...`), or pass total_steps=N to Client (or "
                "steps_per_epoch=len(loader) to train for the config's train.epochs epochs)")
        self.total_steps = int(total)
        # Without steps_per_epoch the whole run counts as one epoch (metrics' epoch = run fraction).
        self.steps_per_epoch = self._user_spe or self.total_steps
        if state is not None:
            self.load_state_dict(state)
        self._order.watch()

    def _check_optimizer(self, cfg: Dict[str, Any]) -> None:
        mine = type(self.optimizer).__name__
        theirs = str(cfg["name"])
        if mine.lower() == theirs.lower():
            return
        text = (f"your optimizer is {type(self.optimizer).__module__}.{mine} but the controller's config has "
                f"optimizer.name {theirs!r}: its LR schedule starts at optimizer.lr = {cfg['lr']}")
        if mine.lower() in _TORCH_OPTIMIZERS or type(self.optimizer).__module__.startswith("torch.optim"):
            raise ClientError(f"{text}. Set optimizer.name: {mine.lower()} in the config "
                              f"(e.g. trqat run --set optimizer.name={mine.lower()} -- ...)")
        warn_user(f"trqat: {text}; make sure that LR suits {mine}")

    def _device(self) -> torch.device:
        p = next(iter(self.model.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    # --- the loop --------------------------------------------------------------------------
    def step_begin(self, step: Optional[int] = None) -> None:
        """Before the forward pass: count the transitions caused by the last optimizer step and send
        them (with the loss of the previous step). `step`, if given, must be the next step."""
        self._check_open()
        if self._begun:
            raise ClientError("step_begin() was already called for this step: call step_end() (or step()) "
                              "before the optimizer step")
        if not self._started:
            start = self._loaded_step if self._loaded_step is not None else (step or 0)
            if step is not None and step != start:
                raise ClientError(f"step_begin(step={step}), but the loaded client state continues at step {start}")
            self._start(start)
        if step is not None and step != self.current_step:
            raise ClientError(f"step_begin(step={step}), but the next step of this run is {self.current_step} "
                              f"(steps run one after another)")
        if self.current_step >= (self.total_steps or 0):
            raise RunOver(f"step {self.current_step} is past the end of the run ({self.total_steps} steps): stop "
                          f"when client.should_stop is true, or loop over range(client.total_steps)")
        if not self._stepped:
            self._order.first_step()
        self.last_counts = self.counter.update()
        self._stepped = True
        self._order.begin()
        extra = diagnostics.step_fields(self.layers, self.current_step, diagnostics.every_from(self.config))
        self._session.step(self.current_step, self.last_counts, self._take_stats(), extra)
        self._begun = True

    def step_end(self, loss: Any = None, correct: Any = None, samples: Any = None) -> LRs:
        """After backward, before optimizer.step(): report this step's loss (a tensor or a number;
        `correct`: correctly classified samples, `samples`: batch size), wait for this step's LRs
        and set them on the optimizer. Returns them, with k, K, R and U for your own logger."""
        if not self._begun:
            raise ClientError("step_end() needs step_begin() first (or call step() once per step)")
        self._stats = {"loss": loss.detach() if isinstance(loss, torch.Tensor) else loss,
                       "correct": correct.detach() if isinstance(correct, torch.Tensor) else correct,
                       "samples": samples}
        return self.apply_lrs()

    def step(self, loss: Any = None, correct: Any = None, samples: Any = None) -> LRs:
        """step_begin() and step_end() in one call: after loss.backward(), before optimizer.step()."""
        if not self._begun:
            self.step_begin()
        return self.step_end(loss, correct, samples)

    def apply_lrs(self) -> LRs:
        """Wait for the controller's LRs of the current step and set them on the optimizer's groups:
        quantized weights get lr_quant (one value, or one per layer), the rest lr_other."""
        if not self._begun:
            raise ClientError("apply_lrs() needs step_begin() first")
        self._order.end()
        body = self._session.lr(self.current_step)
        lq, lo = body["lr_quant"], body["lr_other"]
        values = (lq if isinstance(lq, list) else [lq]) + [lo]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ClientError(f"the controller sent LRs that are not finite numbers >= 0: {lq}, {lo}")
        if isinstance(lq, list) and len(lq) != len(self.layers):
            raise ClientError(f"the controller sent {len(lq)} per-layer LRs for {len(self.layers)} quantized layers")
        apply_lrs(self.optimizer, lq, lo, other=self.set_other_lr)
        self.lr_quant, self.lr_other = lq, lo
        self.controller_state = dict(body["state"])
        self.should_stop = bool(body["stop"])
        decided = LRs(self.current_step, lq, lo, self.should_stop, body["k"], body["K"], body["R"], body["U"])
        self.current_step += 1
        self._begun = False
        return decided

    def evaluated(self, top1: float, loss: float, samples: int = 0, seconds: float = 0.0) -> None:
        """Record an evaluation (top-1 in percent, mean loss) at the current step of the run's log.
        With several ranks, every rank may report it (the first report is logged) or rank 0 alone."""
        self._check_open()
        if not self._started:
            self._start(self.current_step)
        self._session.send(P.EVALUATED, {"top1": float(top1), "loss": float(loss), "samples": int(samples),
                                         "seconds": float(seconds), "last": self._take_stats()})

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The controller's state (K, U, last step) and the stored weight levels: save it in your
        checkpoint beside the model and optimizer, and pass it back as Client(state=...)."""
        return {"format": STATE_FORMAT, "step": self.current_step,
                "total_steps": self.total_steps, "controller": self.controller_state,
                "levels": self.counter.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from a state_dict(); only before the first step."""
        if self._started:
            raise ClientError("load_state_dict() must come before the first step (or pass Client(state=...))")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ClientError(f"not a trqat client state (format {STATE_FORMAT}): {type(state).__name__}")
        self._loaded_step = self.current_step = int(state["step"])  # a resumed loop starts at range(client.current_step, ...)
        self.controller_state = state.get("controller")
        self.counter.load_state_dict(state["levels"])

    # --- session ---------------------------------------------------------------------------
    def _start(self, start_step: int) -> None:
        params = sum(p.numel() for p in self.model.parameters())
        quant = sum(m.weight.numel() for m in self.layers)
        plan = self._session.ready({
            "device": str(self._device()),
            "layers": [{"name": n, "kind": getattr(m, "kind", type(m).__name__.lower()), "numel": m.weight.numel(),
                        "weight_bits": m.weight_bits, "act_bits": m.act_bits}
                       for n, m in zip(self.layer_names, self.layers)],
            "params": {"quantized": quant, "other": params - quant},
            "train_size": 0, "test_size": 0,
            "steps_per_epoch": self.steps_per_epoch, "start_step": start_step,
            "total_steps": self.total_steps, "controller_state": self.controller_state,
        })
        self.total_steps, self.steps_per_epoch = plan["total_steps"], plan["steps_per_epoch"]
        self.current_step = plan["start_step"]
        self._started = True

    def close(self, error: Optional[str] = None) -> None:
        """Say bye (the controller closes the run: completed when every step ran, else stopped)."""
        if self._closed:
            return
        self._closed = True
        self._order.closing(self._stepped, self.current_step, self.total_steps, error)
        try:
            self._session.bye(None if self._begun else self._take_stats(), error)
        finally:
            self._session.close()
            _OPEN.discard(self)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.close(error=None if exc is None else f"{exc_type.__name__}: {exc}")

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("this trqat client is closed")
        if self._session.gone:
            raise ControllerGone(self._session.gone)

    def _take_stats(self) -> Optional[Dict[str, Any]]:
        s, self._stats = self._stats, {"loss": None, "correct": None, "samples": None}
        if all(v is None for v in s.values()):
            return None
        return {"loss": _number(s["loss"]), "correct": _count(s["correct"]), "samples": _count(s["samples"])}


# Clients still open at interpreter exit say bye, naming the uncaught exception if there was one.
_OPEN: "weakref.WeakSet[Client]" = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    exc = getattr(sys, "last_value", None)
    for client in list(_OPEN):
        try:
            client.close(error=None if exc is None else f"{type(exc).__name__}: {exc}")
        except Exception:
            pass
