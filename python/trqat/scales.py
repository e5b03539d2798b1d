"""The quantizers' scales in a managed run: their rules and their optimizer group (docs/method.md).

- configure_scales: quant.weight_scale_init / act_scale_init ("lsq" or "std", the released code's
  3 std rules) and quant.lsq_grad_scale on every quantized layer; weight scales are re-initialised
  from the current (possibly pretrained) weights.
- scale_groups: with optimizer.scale_lr set, the learnable quantizer scales (activation scales, and
  weight scales when they train) leave the "no_decay" group for a "scales" group of their own, with
  that base LR (as a factor of the ordinary LR, `trqat_lr_scale`, so it follows the same schedule), no weight decay and
  optimizer.scale_momentum (SGD); optimizer.no_decay_momentum sets the SGD momentum of "no_decay".
"""
from typing import Any, Dict, List

import torch.nn as nn

from .groups import OTHER
from .quant import quantized_layers


def configure_scales(model: nn.Module, quant_cfg: Dict[str, Any]) -> None:
    for _, layer in quantized_layers(model):
        layer.weight_scale_init = quant_cfg["weight_scale_init"]
        layer.act_scale_init = quant_cfg["act_scale_init"]
        layer.lsq_grad_scale = bool(quant_cfg["lsq_grad_scale"])
        if layer.weight_scale_init != "lsq":  # the layer was built with the LSQ rule
            layer.init_weight_scale()


def scale_groups(model: nn.Module, groups: List[Dict[str, Any]], opt_cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """`groups` from groups.param_groups, with the scales' group split off and the momenta set."""
    sgd = str(opt_cfg["name"]).lower() == "sgd"
    no_decay = next(g for g in groups if g["name"] == "no_decay")
    if sgd and opt_cfg["no_decay_momentum"] is not None:
        no_decay["momentum"] = float(opt_cfg["no_decay_momentum"])
    if opt_cfg["scale_lr"] is None:
        return groups
    scales = {id(p) for _, m in quantized_layers(model) for name, p in m.named_parameters(recurse=False)
              if name in ("act_scale", "weight_scale") and p.requires_grad}
    no_decay["params"] = [p for p in no_decay["params"] if id(p) not in scales]
    group: Dict[str, Any] = {"params": [p for p in model.parameters() if id(p) in scales], "name": "scales",
                             "trqat_role": OTHER, "weight_decay": 0.0,
                             "trqat_lr_scale": float(opt_cfg["scale_lr"]) / float(opt_cfg["lr"])}
    group["lr"] = float(opt_cfg["lr"]) * group["trqat_lr_scale"]
    if sgd:
        group["momentum"] = float(opt_cfg["momentum"] if opt_cfg["scale_momentum"] is None else opt_cfg["scale_momentum"])
    return groups + [group]
