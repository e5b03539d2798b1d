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
import platform
import secrets
import socket
import sys
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import zmq

from . import diagnostics
from . import protocol as P
from .adapt import _unwrap
from .quant import QuantLayer, quantized_layers
from .transitions import TransitionCounter
from .transport import POLL_MS, Heartbeat, Sender, dealer, device_name, env_int

__all__ = ["Client", "LRs", "split_param_groups", "ClientError", "ControllerUnreachable", "Rejected",
           "ControllerGone", "RunOver"]

STATE_FORMAT = 1
BYE_TIMEOUT_S = 10.0
# torch.optim class name (lower case) -> config optimizer.name, for the names whose defaults differ
_TORCH_OPTIMIZERS = {"sgd", "adam", "adamw"}


class ClientError(RuntimeError):
    """Something the user can act on: the message says what went wrong and how to fix it."""


class ControllerUnreachable(ClientError):
    """No controller answered the hello within the connect timeout."""


class Rejected(ClientError):
    """The controller refused this client (protocol version, plan, a duplicate rank, ...)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ControllerGone(ClientError):
    """The controller stopped answering heartbeats."""


class RunOver(ClientError):
    """A step past the end of the run, or after the controller stopped it."""


@dataclass
class LRs:
    """What the controller decided for one step (and set on the optimizer), with the schedule's
    numbers to log: k (this step's measured TR, None on the first step), K (running TR), R (target
    TR) and U (TALR); R and U are None in baseline mode, all four None from an older controller."""

    step: int
    lr_quant: Union[float, List[float]]
    lr_other: float
    stop: bool
    k: Optional[float] = None
    K: Optional[float] = None
    R: Optional[float] = None
    U: Optional[float] = None




def _frozen_scales(model: nn.Module) -> set:
    return {id(m.weight_scale) for _, m in quantized_layers(model) if not m.weight_scale.requires_grad}


def split_param_groups(optimizer: torch.optim.Optimizer, model: nn.Module, *,
                       per_layer: bool = True) -> List[Dict[str, Any]]:
    """Split every parameter group of `optimizer` into the latent weights of the quantized layers
    and the rest, in place, keeping each group's hyperparameters and the optimizer's state.

    - per_layer=True: one group per quantized layer (so every layer can get its own LR); False:
      one quantized group per original group.
    - Groups are tagged: `trqat_role` is "quant" (with `trqat_layer`, the layer's index in the
      model's quantized-layer order, or None) or "other". Set `group["trqat_lr_scale"]` on an
      "other" group to give it a multiple of the ordinary LR schedule (default 1).
    - Trainable quantizer parameters the optimizer does not hold yet (activation scales, output
      scales, and weight scales when they train) are added in one more "other" group with the
      optimizer's defaults and no weight decay: with trqat.quantize(inplace=True) an optimizer
      built before quantizing holds the weights but not the new scales.
    - Raises ValueError when a trainable quantized weight is not in the optimizer.

    Calling it again on a split optimizer changes nothing. Returns optimizer.param_groups.
    """
    model = _unwrap(model)
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("the model has no quantized layers: quantize it first (trqat.adapt.quantize(model))")
    groups = optimizer.param_groups
    if groups and all("trqat_role" in g for g in groups):
        return groups
    index = {id(m.weight): i for i, (_, m) in enumerate(layers)}
    held = {id(p) for g in groups for p in g["params"]}
    missing = [n for n, m in layers if m.weight.requires_grad and id(m.weight) not in held]
    if missing:
        raise ValueError(
            f"the optimizer does not hold the latent weights of the quantized layer(s) {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}: build the optimizer from model.parameters() after "
            f"trqat.adapt.quantize(model)")
    new: List[Dict[str, Any]] = []
    for g in groups:
        hyper = {k: v for k, v in g.items() if k != "params"}
        quant: Dict[Optional[int], List[torch.Tensor]] = {}
        rest: List[torch.Tensor] = []
        for p in g["params"]:
            i = index.get(id(p))
            if i is None:
                rest.append(p)
            else:
                quant.setdefault(i if per_layer else None, []).append(p)
        for i in sorted(quant, key=lambda k: -1 if k is None else k):
            new.append({**hyper, "params": quant[i], "trqat_role": "quant", "trqat_layer": i})
        if rest or not quant:
            new.append({**hyper, "params": rest, "trqat_role": "other"})
    optimizer.param_groups[:] = new
    held = {id(p) for g in new for p in g["params"]}
    scales = []
    for _, m in layers:
        for attr in ("weight_scale", "act_scale", "output_scale"):
            p = getattr(m, attr, None)
            if isinstance(p, nn.Parameter) and p.requires_grad and id(p) not in held:
                scales.append(p)
    if scales:
        extra: Dict[str, Any] = {"params": scales, "trqat_role": "other"}
        if "weight_decay" in optimizer.defaults:
            extra["weight_decay"] = 0.0
        optimizer.add_param_group(extra)
    return optimizer.param_groups




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
    config, freezes the weight scales under TR scheduling (baseline mode trains them), and splits
    the optimizer's groups (split_param_groups). Then, once per optimizer step, either

        loss.backward(); client.step(loss); optimizer.step()

    or, to overlap the round trip with forward/backward,

        client.step_begin(); loss = ...; loss.backward(); client.step_end(loss); optimizer.step()

    Arguments (all optional except model and optimizer):
    - endpoint: the controller's ZeroMQ endpoint; default $TRQAT_ENDPOINT (set by `trqat run`).
    - total_steps: the run length in optimizer steps, used when the config's train.steps is null.
    - steps_per_epoch: optimizer steps per epoch (e.g. len(loader)); without total_steps, the run
      is train.epochs epochs of it. Also makes the metrics' `epoch` column real epochs.
    - state: a dict from client.state_dict() to continue a run from your own checkpoint.
    - set_other_lr: False leaves the LRs of the groups that are not quantized weights to you.
    - rank / world_size: default $TRQAT_RANK/$RANK and $TRQAT_WORLD_SIZE/$WORLD_SIZE (torchrun).
    - connect_timeout: seconds to wait for the controller's answer (default 30,
      $TRQAT_CONNECT_TIMEOUT_MS).
    """

    def __init__(self, endpoint: Optional[str] = None, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                 total_steps: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                 state: Optional[Dict[str, Any]] = None, set_other_lr: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 connect_timeout: Optional[float] = None):
        endpoint = endpoint or os.environ.get("TRQAT_ENDPOINT")
        if not endpoint:
            raise ClientError("no trqat controller endpoint: run the script under the controller "
                              "(trqat run -- python your_script.py), or start `trqat serve` and set "
                              "TRQAT_ENDPOINT to the endpoint it prints (or pass endpoint=...)")
        for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.endpoint = endpoint
        self.model = _unwrap(model)
        self.optimizer = optimizer
        self.set_other_lr = set_other_lr
        named = quantized_layers(self.model)
        if not named:
            raise ValueError("the model has no quantized layers: quantize it first (trqat.adapt.quantize(model))")
        self.layer_names = [n for n, _ in named]
        self.layers: List[QuantLayer] = [m for _, m in named]
        self.rank = rank if rank is not None else env_int("TRQAT_RANK", "RANK", default=0)
        self.world_size = world_size if world_size is not None else env_int("TRQAT_WORLD_SIZE", "WORLD_SIZE", default=1)
        self.run_dir = os.environ.get("TRQAT_RUN_DIR")
        self._user_total, self._user_spe = total_steps, steps_per_epoch
        self.counter = TransitionCounter(self.layers)
        self.config: Dict[str, Any] = {}
        self.total_steps: Optional[int] = None
        self.steps_per_epoch: Optional[int] = None
        self.current_step = 0  # the next step to run
        self.should_stop = False
        self.lr_quant: Union[None, float, List[float]] = None
        self.lr_other: Optional[float] = None
        self.controller_state: Optional[Dict[str, Any]] = None
        self._loaded_step: Optional[int] = None
        self._started = self._begun = self._closed = False
        self._stats: Dict[str, Any] = {"loss": None, "correct": None, "samples": None}

        self._sender = Sender(secrets.token_hex(8))
        self._ctx = zmq.Context()
        self._sock = dealer(self._ctx, endpoint)
        heartbeat_s = (env_int("TRQAT_HEARTBEAT_MS", default=1000) or 1000) / 1000
        timeout_s = (env_int("TRQAT_CONTROLLER_TIMEOUT_MS", default=10000) or 10000) / 1000
        self._gone: Optional[str] = None  # set by the heartbeat thread when the controller is gone
        self._heartbeat = Heartbeat(self._ctx, endpoint, self._sender, heartbeat_s, timeout_s,
                                    on_gone=self._controller_gone)
        if connect_timeout is None:
            connect_timeout = (env_int("TRQAT_CONNECT_TIMEOUT_MS", default=30000) or 30000) / 1000
        try:
            self._handshake(connect_timeout)
            self._configure(state)
        except BaseException:
            self._shutdown_sockets()
            raise
        _OPEN.add(self)

    # --- setup -----------------------------------------------------------------------------
    def _handshake(self, timeout: float) -> None:
        device = self._device()
        self._send(P.HELLO, {
            "protocol": P.PROTOCOL_VERSION, "role": P.ROLE_CLIENT, "rank": self.rank, "world_size": self.world_size,
            "pid": os.getpid(), "hostname": socket.gethostname(), "device": str(device),
            "device_name": device_name(device), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "trqat_version": _version(),
        })
        if not self._sock.poll(timeout * 1000):
            raise ControllerUnreachable(
                f"no trqat controller answered at {self.endpoint} within {timeout:g} s: is `trqat run` or "
                f"`trqat serve` running there? (TRQAT_ENDPOINT, or endpoint=...)")
        try:
            msg = P.decode(self._sock.recv(), check_version=False)
        except P.ProtocolError as e:
            raise ClientError(f"the trqat controller at {self.endpoint} sent a bad answer to hello: {e}") from None
        if msg["type"] == P.REJECT:
            reason = str(msg["body"].get("reason"))
            raise Rejected(f"the trqat controller at {self.endpoint} refused this client: {reason}", reason)
        if msg["v"] != P.PROTOCOL_VERSION:
            raise Rejected(f"protocol version mismatch: the controller speaks version {msg['v']}, this client speaks "
                           f"version {P.PROTOCOL_VERSION}; install matching versions of the trqat npm package and "
                           f"the trqat Python package", f"version {msg['v']}")
        if msg["type"] == P.ERROR:
            raise ClientError(f"the trqat controller at {self.endpoint} reported: {msg['body']['message']}")
        if msg["type"] != P.WELCOME:
            raise ClientError(f"the trqat controller answered hello with {msg['type']!r}, expected 'welcome'")
        self.config = msg["body"]["config"]
        self._heartbeat.start()

    def _configure(self, state: Optional[Dict[str, Any]]) -> None:
        cfg = self.config
        mode = cfg.get("mode", "tr")
        for m in self.layers:  # TR: levels may change only through weight updates (method.md)
            m.freeze_weight_scale(mode == "tr")
        self._check_optimizer(cfg.get("optimizer", {}))
        split_param_groups(self.optimizer, self.model)
        train = cfg.get("train", {})
        steps = train.get("steps")
        if steps is not None and self._user_total is not None and steps != self._user_total:
            warnings.warn(f"trqat: the controller's config sets train.steps = {steps}; it wins over "
                          f"total_steps={self._user_total}", stacklevel=3)
        total = steps if steps is not None else self._user_total
        if total is None and self._user_spe is not None:
            total = max(1, round(float(train.get("epochs", 1)) * self._user_spe))
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

    def _check_optimizer(self, cfg: Dict[str, Any]) -> None:
        mine = type(self.optimizer).__name__
        theirs = str(cfg.get("name", "sgd"))
        if mine.lower() == theirs.lower():
            return
        text = (f"your optimizer is {type(self.optimizer).__module__}.{mine} but the controller's config has "
                f"optimizer.name {theirs!r}: its LR schedule starts at optimizer.lr = {cfg.get('lr')}")
        if mine.lower() in _TORCH_OPTIMIZERS or type(self.optimizer).__module__.startswith("torch.optim"):
            raise ClientError(f"{text}. Set optimizer.name: {mine.lower()} in the config "
                              f"(e.g. trqat run --set optimizer.name={mine.lower()} -- ...)")
        warnings.warn(f"trqat: {text}; make sure that LR suits {mine}", stacklevel=4)

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
        counts = self.counter.update()
        stats = self._take_stats()
        extra = diagnostics.step_fields(self.layers, self.current_step, diagnostics.every_from(self.config))
        self._send(P.STEP, {"step": self.current_step, "counts": counts, **stats, **extra})
        self._begun = True

    def step_end(self, loss: Any = None, correct: Any = None, samples: Any = None) -> LRs:
        """After backward, before optimizer.step(): report this step's loss (a tensor or a number;
        `correct`: correctly classified samples, `samples`: batch size), wait for this step's LRs
        and set them on the optimizer. Returns them."""
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
        body = self._recv((P.LR,))["body"]
        if body["step"] != self.current_step:
            raise ClientError(f"the controller sent the LRs of step {body['step']} while step {self.current_step} waits")
        lq, lo = body["lr_quant"], body["lr_other"]
        values = (lq if isinstance(lq, list) else [lq]) + [lo]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ClientError(f"the controller sent LRs that are not finite numbers >= 0: {lq}, {lo}")
        if isinstance(lq, list) and len(lq) != len(self.layers):
            raise ClientError(f"the controller sent {len(lq)} per-layer LRs for {len(self.layers)} quantized layers")
        for g in self.optimizer.param_groups:
            if g.get("trqat_role") == "quant":
                i = g.get("trqat_layer")
                g["lr"] = lq[i if i is not None else 0] if isinstance(lq, list) else lq
            elif self.set_other_lr:
                g["lr"] = lo * g.get("trqat_lr_scale", 1.0)
        self.lr_quant, self.lr_other = lq, lo
        if body.get("state") is not None:
            self.controller_state = dict(body["state"])
        self.should_stop = bool(body["stop"])
        decided = LRs(self.current_step, lq, lo, self.should_stop, **{key: body.get(key) for key in ("k", "K", "R", "U")})
        self.current_step += 1
        self._begun = False
        return decided

    def evaluated(self, top1: float, loss: float, samples: int = 0, seconds: float = 0.0) -> None:
        """Record an evaluation (top-1 in percent, mean loss) at the current step of the run's log."""
        self._check_open()
        if not self._started:
            self._start(self._loaded_step or 0)
        self._send(P.EVALUATED, {"top1": float(top1), "loss": float(loss), "samples": int(samples),
                                 "seconds": float(seconds)})

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The controller's state (K, U, last step) and the stored weight levels: save it in your
        checkpoint beside the model and optimizer, and pass it back as Client(state=...)."""
        return {"format": STATE_FORMAT, "step": self.current_step if self._started else (self._loaded_step or 0),
                "total_steps": self.total_steps, "controller": self.controller_state,
                "levels": self.counter.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from a state_dict(); only before the first step."""
        if self._started:
            raise ClientError("load_state_dict() must come before the first step (or pass Client(state=...))")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ClientError(f"not a trqat client state (format {STATE_FORMAT}): {type(state).__name__}")
        self._loaded_step = int(state["step"])
        self.controller_state = state.get("controller")
        self.counter.load_state_dict(state["levels"])

    # --- session ---------------------------------------------------------------------------
    def _start(self, start_step: int) -> None:
        params = sum(p.numel() for p in self.model.parameters())
        quant = sum(m.weight.numel() for m in self.layers)
        self._send(P.READY, {
            "device": str(self._device()),
            "layers": [{"name": n, "kind": getattr(m, "kind", type(m).__name__.lower()), "numel": m.weight.numel(),
                        "weight_bits": m.weight_bits, "act_bits": m.act_bits}
                       for n, m in zip(self.layer_names, self.layers)],
            "params": {"quantized": quant, "other": params - quant},
            "train_size": 0, "test_size": 0,
            "steps_per_epoch": self.steps_per_epoch, "start_step": start_step,
            "total_steps": self.total_steps, "controller_state": self.controller_state,
        })
        plan = self._recv((P.PLAN,))["body"]
        self.total_steps, self.steps_per_epoch = plan["total_steps"], plan["steps_per_epoch"]
        self.current_step = plan["start_step"]
        self._started = True

    def _controller_gone(self, reason: str) -> None:
        """Heartbeat thread: remembered here, raised as ControllerGone in the user's loop."""
        self._gone = reason

    def close(self, error: Optional[str] = None) -> None:
        """Say bye (the controller closes the run: completed when every step ran, else stopped)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._gone is None:
                stats = self._take_stats() if not self._begun else {"loss": None, "correct": None, "samples": None}
                body: Dict[str, Any] = dict(stats)
                if error:
                    body["error"] = str(error)[:4000]
                self._send(P.BYE, body)
                deadline = time.monotonic() + BYE_TIMEOUT_S
                while time.monotonic() < deadline and self._gone is None:
                    if self._sock.poll(POLL_MS):
                        try:
                            if P.decode(self._sock.recv())["type"] in (P.BYE, P.ERROR):
                                break
                        except P.ProtocolError:
                            continue
        finally:
            self._shutdown_sockets()
            _OPEN.discard(self)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self.close(error=None if exc is None else f"{exc_type.__name__}: {exc}")

    @property
    def closed(self) -> bool:
        return self._closed

    # --- messaging -------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("this trqat client is closed")
        if self._gone:
            raise ControllerGone(self._gone)

    def _take_stats(self) -> Dict[str, Any]:
        s, self._stats = self._stats, {"loss": None, "correct": None, "samples": None}
        return {"loss": _number(s["loss"]), "correct": _count(s["correct"]), "samples": _count(s["samples"])}

    def _send(self, type: str, body: Dict[str, Any]) -> None:
        self._sock.send(self._sender.frame(type, body))

    def _recv(self, expected: Sequence[str]) -> Dict[str, Any]:
        """The next message, of one of `expected` types; no timeout while heartbeats are answered."""
        while not self._sock.poll(POLL_MS):
            if self._gone:
                raise ControllerGone(self._gone)
        try:
            msg = P.decode(self._sock.recv())
        except P.ProtocolError as e:
            raise ClientError(f"bad message from the trqat controller: {e}") from None
        if msg["type"] == P.ERROR:
            text = msg["body"]["message"]
            cls = RunOver if ("past the end" in text or "stopped the run" in text) else ClientError
            raise cls(f"the trqat controller reported: {text}")
        if msg["type"] == P.REJECT:
            reason = msg["body"]["reason"]
            raise Rejected(f"the trqat controller refused this client: {reason}", reason)
        if msg["type"] not in expected:
            raise ClientError(f"unexpected {msg['type']!r} from the trqat controller while waiting for "
                              f"{' or '.join(expected)}")
        return msg

    def _shutdown_sockets(self) -> None:
        self._heartbeat.stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        self._sock.close(linger=1000)
        self._ctx.term()


def _version() -> str:
    try:
        from . import __version__
        return __version__
    except ImportError:  # pragma: no cover
        return "unknown"


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
