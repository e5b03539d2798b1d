"""The optimizer of a managed run: any usable torch.optim class by name, on the parameter groups
of groups.py (and the scales' group of scales.py), with the config's arguments checked by name."""
import inspect
from typing import Any, Dict

import torch
import torch.nn as nn

from .groups import param_groups
from .log import logger
from .scales import scale_groups

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
    kwargs = dict(cfg["kwargs"])
    if "weight_decay" in kwargs:
        wd = qwd = kwargs.pop("weight_decay")
    else:
        wd, qwd = cfg["weight_decay"], cfg["quantized_weight_decay"]
    groups = scale_groups(model, param_groups(model, wd, qwd), cfg)
    args: Dict[str, Any] = {"lr": cfg["lr"]}
    if name == "sgd":
        args.update(momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    elif name in ("adam", "adamw"):
        args.update(betas=tuple(cfg["betas"]), eps=cfg["eps"])
    args.update(kwargs)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    accepted = [k for k in params if k not in ("self", "params")]
    for key in args:
        if not takes_any and key not in params:
            raise ValueError(f"optimizer {cls.__name__} ({name!r}) does not accept the keyword argument "
                             f"{key!r}; it takes: {', '.join(accepted)}")
    if "weight_decay" not in params and not takes_any and any(g["weight_decay"] for g in groups):
        logger.warning("optimizer %s has no weight_decay: weight decay is not applied", cls.__name__)
    try:
        return cls(groups, **args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"optimizer {cls.__name__} ({name!r}) rejected its arguments "
                         f"{', '.join(f'{k}={v!r}' for k, v in args.items())}: {e}") from e
