"""Per-layer counts of weight transitions: weights whose integer level changed since last step."""
from typing import Any, Dict, List, Optional, Sequence

import torch

from .quant import QuantLayer


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

