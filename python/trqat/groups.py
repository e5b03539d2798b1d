"""Optimizer parameter groups and who gets which learning rate: one rule for trqat's worker and for
users' own optimizers (the client).

Every group is tagged:
- `trqat_role: "quant"`, with `trqat_layer` (the layer's index in the model's quantized-layer order,
  or None for a group holding several layers): latent weights of quantized layers. They get the
  controller's `lr_quant`, U(t) under TR scheduling (one number, or one per layer).
- `trqat_role: "other"`: everything else that trains. It gets the ordinary LR schedule, times
  `trqat_lr_scale` when the group sets one (e.g. activation scales with an LR of their own).
"""
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

from .quant import quantized_layers

QUANT, OTHER = "quant", "other"

LRQuant = Union[float, Sequence[float]]


def param_groups(model: nn.Module, weight_decay: float,
                 quantized_weight_decay: Optional[float] = None) -> List[Dict[str, Any]]:
    """The groups trqat's worker trains with: one per quantized layer (its latent weight, with
    quantized_weight_decay), then the other conv/linear weights (weight_decay) and everything else
    that trains (BN, biases, scales, tokens: no decay). Frozen parameters are left out."""
    if quantized_weight_decay is None:
        quantized_weight_decay = weight_decay
    layers = quantized_layers(model)
    frozen = [n for n, m in layers if not m.weight.requires_grad]
    if frozen:  # their LRs and transitions would not line up with the controller's layer list
        raise ValueError(f"quantized layers with frozen weights (requires_grad=False): {', '.join(frozen[:5])}; "
                         "keep them in full precision (quant.full_precision) or unfreeze them")
    quant = {id(m.weight) for _, m in layers}
    fp = {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))} - quant
    decayed: List[nn.Parameter] = []
    no_decay: List[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad and id(p) not in quant:
            (decayed if id(p) in fp else no_decay).append(p)
    groups = [{"params": [m.weight], "name": n, "trqat_role": QUANT, "trqat_layer": i,
               "weight_decay": quantized_weight_decay} for i, (n, m) in enumerate(layers)]
    return groups + [{"params": decayed, "name": "fp_weights", "trqat_role": OTHER, "weight_decay": weight_decay},
                     {"params": no_decay, "name": "no_decay", "trqat_role": OTHER, "weight_decay": 0.0}]


def split_param_groups(optimizer: torch.optim.Optimizer, model: nn.Module, *,
                       per_layer: bool = True) -> List[Dict[str, Any]]:
    """Split every parameter group of a user's `optimizer` into the latent weights of the quantized
    layers and the rest, in place, keeping each group's hyperparameters and the optimizer's state,
    and tag them (module docstring).

    - per_layer=True: one group per quantized layer (so every layer can get its own LR); False:
      one quantized group per original group.
    - Trainable quantizer parameters the optimizer does not hold yet (activation scales, output
      scales, and weight scales when they train) are added in one more "other" group with the
      optimizer's defaults and no weight decay: with trqat.quantize(inplace=True) an optimizer
      built before quantizing holds the weights but not the new scales.
    - Raises ValueError when a trainable quantized weight is not in the optimizer.

    Calling it again on a split optimizer changes nothing. Returns optimizer.param_groups.
    """
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("the model has no quantized layers: quantize it first (trqat.quantize(model))")
    groups = optimizer.param_groups
    if groups and all("trqat_role" in g for g in groups):
        return groups
    index = {id(m.weight): i for i, (_, m) in enumerate(layers)}
    held = {id(p) for g in groups for p in g["params"]}
    missing = [n for n, m in layers if m.weight.requires_grad and id(m.weight) not in held]
    if missing:
        foreign = len(held - {id(p) for p in model.parameters()})
        # quantize(inplace=False) copies the model: an optimizer built before holds the original's parameters.
        copied = (f" (it holds {foreign} parameter(s) that are not this model's: trqat.quantize(model, inplace=False) "
                  f"returns a copy with parameters of its own)") if foreign else ""
        raise ValueError(
            f"the optimizer does not hold the latent weights of the quantized layer(s) {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}{copied}: build the optimizer from model.parameters() after "
            f"trqat.quantize(model)")
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
            new.append({**hyper, "params": quant[i], "trqat_role": QUANT, "trqat_layer": i})
        if rest or not quant:
            new.append({**hyper, "params": rest, "trqat_role": OTHER})
    optimizer.param_groups[:] = new
    held = {id(p) for g in new for p in g["params"]}
    scales = []
    for _, m in layers:
        for attr in ("weight_scale", "act_scale", "output_scale"):
            p = getattr(m, attr, None)
            if isinstance(p, nn.Parameter) and p.requires_grad and id(p) not in held:
                scales.append(p)
    if scales:
        extra: Dict[str, Any] = {"params": scales, "trqat_role": OTHER}
        if "weight_decay" in optimizer.defaults:
            extra["weight_decay"] = 0.0
        optimizer.add_param_group(extra)
    return optimizer.param_groups


def apply_lrs(optimizer: torch.optim.Optimizer, lr_quant: LRQuant, lr_other: float, *, other: bool = True) -> None:
    """Sets the controller's LRs on a tagged optimizer: `lr_quant` (one LR, or one per quantized layer
    in the model's layer order) on the quantized weights, `lr_other` (times `trqat_lr_scale`) on the
    rest; `other=False` leaves the rest to the user. Looked up on every call: optimizer.load_state_dict
    replaces the group dicts, so cached references would stop receiving the LRs after a resume."""
    per_layer = isinstance(lr_quant, (list, tuple))
    for g in optimizer.param_groups:
        role = g.get("trqat_role")
        if role == QUANT:
            i = g.get("trqat_layer")
            g["lr"] = float(lr_quant[i if i is not None else 0]) if per_layer else float(lr_quant)  # type: ignore[index]
        elif role == OTHER:
            if other:
                g["lr"] = float(lr_other) * g.get("trqat_lr_scale", 1.0)
        else:
            raise ValueError("the optimizer's parameter groups are not tagged by trqat (split_param_groups)")


def quant_layer_count(optimizer: torch.optim.Optimizer) -> int:
    """How many per-layer quantized groups the optimizer has (the length a per-layer lr_quant must have)."""
    return sum(1 for g in optimizer.param_groups if g.get("trqat_role") == QUANT)
