"""Counting weight transitions (weights whose integer level changed since the last step), the one place:

- `TransitionCounter`: per layer, 1 byte per weight (the worker, the client);
- `TransitionTracker`: the same on a whole model, by layer name, for scripts without a controller;
- `count_transitions`: the stateless form.
"""
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .log import logger
from .quant import QuantLayer, quantized_layers


class TransitionCounter:
    """Keeps the previous int8 levels of every quantized layer (1 byte per weight, on its device).

    update() compares the current levels with the stored ones and returns one count per layer,
    in the order of `layers`, with a single device-to-host transfer per call. On CUDA (torch >= 2.1)
    the counting is one CUDA graph replay instead of ~9 kernel launches per layer (`CountGraph`);
    `TRQAT_COUNT_GRAPH=0` keeps it eager.
    """

    def __init__(self, layers: Sequence[QuantLayer]):
        self.layers = list(layers)
        self.numels = [m.weight.numel() for m in self.layers]
        self.prev: Optional[List[torch.Tensor]] = None
        self.graph: Optional[CountGraph] = None
        self.graph_failed = False
        self.recaptures = 0

    def update(self) -> Optional[List[int]]:
        """Store the current levels; return the per-layer changes, or None without previous levels."""
        counts = self.update_tensor()
        return None if counts is None else counts.tolist()

    def update_tensor(self) -> Optional[torch.Tensor]:
        """update(), as an int64 tensor on the weights' device (no host synchronisation)."""
        if self.graph is not None:
            if self.graph.current(self.prev):
                counts = self.graph.replay()
                if self.graph.failed:  # it disagreed with the eager count: never again in this process
                    self.graph, self.graph_failed = None, True
                return counts
            # a tensor it reads was replaced: capture again below, a few times at most
            self.graph, self.recaptures = None, self.recaptures + 1
            self.graph_failed = self.recaptures > MAX_RECAPTURES
        cur = [m.weight_levels() for m in self.layers]
        prev, self.prev = self.prev, cur
        if not self.graph_failed and graphs_available(self.layers):
            self.graph = CountGraph.capture(self.layers, cur)
            self.graph_failed = self.graph is None
        if prev is None:
            return None
        if not cur:
            return torch.zeros(0, dtype=torch.long)
        return changes(cur, prev)

    def state_dict(self) -> Dict[str, Any]:
        return {"prev": None if self.prev is None else [p.cpu() for p in self.prev]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        prev = state["prev"]
        self.graph = None  # it compares with the levels it holds; the next update() captures a new one
        if prev is None:
            self.prev = None
            return
        if len(prev) != len(self.layers):
            raise ValueError(f"transition state has {len(prev)} layers, the model has {len(self.layers)}")
        for p, m in zip(prev, self.layers):
            if p.shape != m.weight.shape or p.dtype != torch.int8:
                raise ValueError(f"transition state shape {tuple(p.shape)}/{p.dtype} does not match "
                                 f"weight {tuple(m.weight.shape)}/int8")
        self.prev = [p.to(m.weight.device) for p, m in zip(prev, self.layers)]


def changes(cur: Sequence[torch.Tensor], prev: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per layer, the levels that differ: the eager count (one tensor, no host synchronisation)."""
    with torch.no_grad():
        return torch.stack([(c != p).sum() for c, p in zip(cur, prev)])


GRAPH_ENV = "TRQAT_COUNT_GRAPH"  # "0": count with eager kernels on CUDA too


# torch >= 2.1: a capture that checks only its own thread, so that a DataLoader's pinning thread cannot break it
_THREAD_LOCAL_CAPTURE = "capture_error_mode" in inspect.signature(torch.cuda.graph.__init__).parameters


def graphs_available(layers: Sequence[QuantLayer]) -> bool:
    """CUDA graphs for counting: every weight and scale on one CUDA device, torch >= 2.1, and not turned off."""
    return (_THREAD_LOCAL_CAPTURE and bool(layers) and all(m.weight.is_cuda for m in layers)
            and len({t.device for m in layers for t in (m.weight, m.weight_scale)}) == 1
            and os.environ.get(GRAPH_ENV, "1") != "0")


MAX_RECAPTURES = 2  # weights whose storage keeps being replaced (FSDP, parametrizations) count eagerly
CHECKED_REPLAYS = 10  # replays checked against the eager count until one saw transitions, at most


class CountGraph:
    """The counting of every layer as one captured CUDA graph.

    A step of a small model on a fast GPU is bound by the host's kernel launches, and eager counting
    launches ~9 kernels per layer (BENCHMARKS.md, "GPU"). The graph reads the weights and scales at
    the addresses they had at capture and compares with, then overwrites, `prev` in place: it is used
    only while those tensors and the bit-widths are the same (`current`), and its replays are checked
    against the eager count and levels until one saw transitions. Its temporaries stay in the graph's
    memory pool while it lives (about 10 bytes per weight of the largest layer).
    """

    def __init__(self, layers: List[QuantLayer], prev: List[torch.Tensor]):
        self.layers, self.prev = layers, prev
        self.key = self._key()
        self.checks_left, self.failed = CHECKED_REPLAYS, False
        self.graph: Any = None
        self.counts: Optional[torch.Tensor] = None

    @classmethod
    def capture(cls, layers: List[QuantLayer], prev: List[torch.Tensor]) -> "Optional[CountGraph]":
        """Called right after `prev` was stored from the current weights, so the warm-up run leaves it
        unchanged. None when the capture fails (counting stays eager)."""
        self = cls(layers, prev)
        try:
            self._record()
        except RuntimeError as e:
            logger.warning("counting transitions without a CUDA graph (%s=0 skips trying): %s", GRAPH_ENV, e)
            return None
        return self

    def _record(self) -> None:
        """body() captured on a side stream of the weights' device: `counts` is its output, which
        `_replay()` refills."""
        with torch.cuda.device(self.layers[0].weight.device):
            stream = torch.cuda.current_stream()
            try:
                side = torch.cuda.Stream()
                side.wait_stream(stream)
                with torch.cuda.stream(side):
                    self.body()  # warm-up outside the capture, as torch's CUDA graph notes ask
                stream.wait_stream(side)
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=side, capture_error_mode="thread_local"):
                    self.counts = self.body()
            finally:
                torch.cuda.set_stream(stream)  # a failed capture_end() would leave the capture stream current

    def _replay(self) -> None:
        with torch.cuda.device(self.layers[0].weight.device):  # the graph's device, whichever is current
            self.graph.replay()

    def body(self) -> torch.Tensor:
        with torch.no_grad():
            counts = []
            for m, p in zip(self.layers, self.prev):
                c = m.weight_levels()
                counts.append((c != p).sum())
                p.copy_(c)
            return torch.stack(counts)

    def _key(self) -> List[int]:
        return [v for m, p in zip(self.layers, self.prev)
                for v in (m.weight.data_ptr(), m.weight_scale.data_ptr(), p.data_ptr(), m.weight_bits)]

    def current(self, prev: Optional[List[torch.Tensor]]) -> bool:
        """Whether the graph still reads the model's tensors: none replaced (a `.data` assignment, a
        move to another device), no bit-width changed, and `prev` the list it was captured with."""
        return prev is self.prev and self._key() == self.key

    def replay(self) -> torch.Tensor:
        """This step's counts (a new tensor), with `prev` updated. Checked against the eager count and
        levels (one host synchronisation each) until a checked step saw transitions; when they differ
        (`failed`), the eager count and levels are kept."""
        if self.checks_left == 0:
            self._replay()
            return self.counts.clone()  # type: ignore[union-attr]
        levels = [m.weight_levels() for m in self.layers]
        expected = changes(levels, self.prev)
        self._replay()
        counts = self.counts.clone()  # type: ignore[union-attr]
        levels_ok = all(torch.equal(p, c) for p, c in zip(self.prev, levels))
        self.checks_left = 0 if int(expected.sum()) > 0 else self.checks_left - 1
        if torch.equal(expected, counts) and levels_ok:
            return counts
        self.failed = True
        logger.warning("the CUDA graph's transition counts %s differ from the eager count %s%s: counting without it "
                       "(%s=0 skips it; please report this)", counts.tolist(), expected.tolist(),
                       "" if levels_ok else ", and its stored levels from the weights'", GRAPH_ENV)
        for p, c in zip(self.prev, levels):
            p.copy_(c)
        return expected


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel, so layer names are the model's."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


class TransitionTracker:
    """Counts weight transitions of a quantized model on its own (no controller needed).

        tracker = TransitionTracker(model)
        for x, y in loader:
            counts = tracker.update()      # before the forward pass: transitions of the last update
            ...
        tracker.rate                       # k of the last update: total transitions / total weights

    update() compares the integer levels of every quantized weight with those of the previous call
    (stored as int8, 1 byte per weight, on the weights' device) and returns {layer name: count}
    in the model's layer order, or None on the first call. The levels are exactly those the
    forward pass uses.
    """

    def __init__(self, model: nn.Module):
        layers = quantized_layers(unwrap(model))
        if not layers:
            raise ValueError("the model has no quantized layers: quantize it first (trqat.quantize(model))")
        self.names = [n for n, _ in layers]
        self.layers = [m for _, m in layers]
        self.numels = [m.weight.numel() for m in self.layers]
        self.counter = TransitionCounter(self.layers)
        self.counts: Optional[List[int]] = None

    @property
    def total_weights(self) -> int:
        return sum(self.numels)

    def update(self) -> Optional[Dict[str, int]]:
        """Transitions per layer since the previous call; None on the first call."""
        self.counts = self.counter.update()
        return None if self.counts is None else dict(zip(self.names, self.counts))

    @property
    def total(self) -> Optional[int]:
        """Total transitions of the last update() (None before two calls)."""
        return None if self.counts is None else sum(self.counts)

    @property
    def rate(self) -> Optional[float]:
        """k: the network-wide transition rate of the last update(), total over total weights."""
        return None if self.counts is None else sum(self.counts) / max(1, self.total_weights)

    def rates(self) -> Optional[Dict[str, float]]:
        """Per-layer transition rates of the last update()."""
        if self.counts is None:
            return None
        return {n: c / max(1, k) for n, c, k in zip(self.names, self.counts, self.numels)}

    def state_dict(self) -> Dict[str, object]:
        return self.counter.state_dict()

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self.counter.load_state_dict(state)


def count_transitions(model: nn.Module, previous: Optional[Sequence[torch.Tensor]] = None
                      ) -> Tuple[Optional[Dict[str, int]], List[torch.Tensor]]:
    """Stateless form: (per-layer counts against `previous` levels or None, the current levels).

        counts, levels = count_transitions(model)            # counts is None
        ... optimizer.step() ...
        counts, levels = count_transitions(model, levels)    # {layer name: transitions}
    """
    layers = quantized_layers(unwrap(model))
    if not layers:
        raise ValueError("the model has no quantized layers: quantize it first (trqat.quantize(model))")
    current = [m.weight_levels() for _, m in layers]
    if previous is None:
        return None, current
    if len(previous) != len(current):
        raise ValueError(f"previous levels are for {len(previous)} layers, the model has {len(current)}")
    counts = changes(current, [p.to(c.device) for c, p in zip(current, previous)]).tolist()
    return dict(zip([n for n, _ in layers], counts)), current
