"""How close the quantized weights are to changing level: the distance of each latent weight to its
nearest transition point, in quantization steps.

A weight's level changes when gamma * w / s crosses a transition point: the midpoints k + 0.5
between neighbouring levels alpha..beta (binary weights: 0, where the sign flips). The distance is

    u = gamma * w / s
    d = |u - clamp(floor(u) + 0.5, alpha + 0.5, beta - 0.5)|        (binary: d = |u|)

so an interior weight has d in [0, 0.5] (0.5: at the centre of its level), and a weight beyond the
clipping range is further away. Late in training latent weights crowd next to transition points
and flip back and forth; this shows it. The authors' code logs the per-layer mean every 100 steps.

distance_summary() reports, per quantized layer, a histogram (DISTANCE_BINS - 1 bins of
DISTANCE_BIN_WIDTH over [0, 0.5), then one bin for d >= 0.5) and the mean, with one transfer from
the device. Sent with the `step` message every train.diagnostics_every steps (docs/protocol.md).
"""
from typing import Any, Dict, Sequence

import torch

from .quant import MIN_SCALE, QuantLayer, qrange

DISTANCE_BINS = 11  # keep in sync with src/bridge/protocol.ts
DISTANCE_BIN_WIDTH = 0.05


def transition_distance(layer: QuantLayer) -> torch.Tensor:
    """Per weight of `layer`, the distance to its nearest transition point, in quantization steps."""
    alpha, beta, gamma = qrange(layer.weight_bits, True)
    with torch.no_grad():
        u = layer.weight.detach().float() * gamma / layer.weight_scale.detach().float().clamp_min(MIN_SCALE)
        if layer.weight_bits == 1:  # sign: the only transition point is 0
            return u.abs()
        nearest = (u.floor() + 0.5).clamp(alpha + 0.5, beta - 0.5)
        return (u - nearest).abs()


def distance_summary(layers: Sequence[QuantLayer]) -> Dict[str, Any]:
    """{"hist": one list of DISTANCE_BINS counts per layer, "mean": one mean distance per layer}."""
    if not layers:
        return {"hist": [], "mean": []}
    hists, means = [], []
    for layer in layers:
        d = transition_distance(layer).flatten()
        bins = (d / DISTANCE_BIN_WIDTH).floor().clamp_(max=DISTANCE_BINS - 1).long()
        hists.append(torch.bincount(bins, minlength=DISTANCE_BINS).double())
        means.append(d.double().mean())
    summary = torch.cat([torch.stack(hists), torch.stack(means)[:, None]], dim=1).cpu()  # one transfer
    return {"hist": [[int(c) for c in row[:-1].tolist()] for row in summary],
            "mean": [float(m) for m in summary[:, -1].tolist()]}


def step_fields(layers: Sequence[QuantLayer], step: int, every: int) -> Dict[str, Any]:
    """The optional fields of the `step` message of `step`: {"dist": ...} every `every` steps from
    step 0, else {} (every = 0: never)."""
    if every > 0 and step % every == 0:
        return {"dist": distance_summary(layers)}
    return {}


def every_from(config: Dict[str, Any]) -> int:
    """train.diagnostics_every of a run config (0: never)."""
    return int(config["train"]["diagnostics_every"])
