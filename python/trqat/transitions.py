"""Counting weight transitions (weights whose integer level changed since the last step), the one place:

- `TransitionCounter`: per layer, 1 byte per weight (the worker, the client);
- `TransitionTracker`: the same on a whole model, by layer name, for scripts without a controller;
- `count_transitions`: the stateless form.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .quant import QuantLayer, quantized_layers


class TransitionCounter:
    """Keeps the previous int8 levels of every quantized layer (1 byte per weight, on its device).

    update() compares the current levels with the stored ones and returns one count per layer,
    in the order of `layers`, with a single device-to-host transfer per call.
    """

    def __init__(self, layers: Sequence[QuantLayer]):
        self.layers = list(layers)
        self.numels = [m.weight.numel() for m in self.layers]
        self.prev: Optional[List[torch.Tensor]] = None

    def update(self) -> Optional[List[int]]:
        """Store the current levels; return the per-layer changes, or None without previous levels."""
        counts = self.update_tensor()
        return None if counts is None else counts.tolist()

    def update_tensor(self) -> Optional[torch.Tensor]:
        """update(), as an int64 tensor on the weights' device (no host synchronisation)."""
        cur = [m.weight_levels() for m in self.layers]
        prev, self.prev = self.prev, cur
        if prev is None:
            return None
        if not cur:
            return torch.zeros(0, dtype=torch.long)
        with torch.no_grad():
            return torch.stack([(c != p).sum() for c, p in zip(cur, prev)])

    def state_dict(self) -> Dict[str, Any]:
        return {"prev": None if self.prev is None else [p.cpu() for p in self.prev]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        prev = state["prev"]
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
    with torch.no_grad():
        counts = [int((c != p.to(c.device)).sum()) for c, p in zip(current, previous)]
    return dict(zip([n for n, _ in layers], counts)), current
