"""Quantize an existing PyTorch model, and count its weight transitions on its own.

    from trqat.adapt import quantize, TransitionTracker

    model = quantize(MyNet(), weight_bits=2, act_bits=2)     # in place; first/last layers stay FP
    tracker = TransitionTracker(model)
    ...
    counts = tracker.update()   # {layer name: transitions since the last call}, None the first time

`quantize` replaces nn.Conv1d / nn.Conv2d / nn.Linear modules (nested anywhere, grouped and
depthwise convolutions, dilation, strides, with or without bias) by their quantized versions
(QConv1d / QConv2d / QLinear, modified LSQ, docs/method.md). It checks everything before it changes
anything, and refuses with a ValueError what it cannot quantize.

Managed runs quantize through the same function: `quantize_from_config` is the one translation of
the config's `quant` section (and of a model's `quant_hints`) into `quantize` arguments.
"""
import copy
import fnmatch
import gc
import warnings
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn

from .log import warn_user
from .quant import FP_BITS, QUANT_TYPES, QConv1d, QuantLayer, qrange, replace_module
from .transitions import TransitionTracker, count_transitions  # re-exported: trqat.adapt's public names

Patterns = Union[None, str, Sequence[str]]

__all__ = ["quantize", "quantize_from_config", "QConv1d", "TransitionTracker", "count_transitions", "SUPPORTED_TYPES"]

#: float layer type -> its quantized replacement
SUPPORTED_TYPES: Dict[Type[nn.Module], Type[QuantLayer]] = {q.float_type: q for q in QUANT_TYPES}
# Layers with weights that look quantizable but are not: named in the errors.
_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear)


def _patterns(value: Patterns, what: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    items = list(value)
    for p in items:
        if not isinstance(p, str):
            raise TypeError(f"{what} must be fnmatch patterns (str), got {type(p).__name__} {p!r}")
    return items


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """fnmatch `name`, or one of its parent module names, against `patterns` ("layer1" covers layer1.*)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(p, pat) for pat in patterns for p in prefixes)


def _sample(names: Sequence[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _check_patterns(model: nn.Module, patterns: Mapping[str, Sequence[str]]) -> None:
    """Every pattern must match some module name: a typo must not pass silently."""
    names = [n for n, _ in model.named_modules() if n]
    for what, pats in patterns.items():
        for pat in pats:
            if pat != "*" and not any(_matches(n, [pat]) for n in names):
                raise ValueError(f"{what} pattern {pat!r} matches no module of the model "
                                 f"(module names: {_sample(names) or 'none, the model has no submodules'})")


def _layer_bits(value: Optional[Mapping[str, int]]) -> Dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"layer_bits must be a mapping {{pattern: bits}}, got {type(value).__name__}")
    for pat, bits in value.items():
        if not isinstance(pat, str) or not pat:
            raise TypeError(f"layer_bits keys must be fnmatch patterns (non-empty str), got {pat!r}")
        if not _is_bits(bits):
            raise ValueError(f"layer_bits[{pat!r}] must be an int in 1..8, got {bits!r} "
                             "(keep a layer in full precision with exclude=[...])")
    return dict(value)


def _why_not(m: nn.Module) -> Optional[str]:
    """Why this weight layer cannot be quantized, or None when it can."""
    t = type(m)
    if isinstance(m, QuantLayer):
        return "it is already quantized"
    weight = getattr(m, "weight", None)
    if isinstance(weight, nn.parameter.UninitializedParameter):
        return "its parameters are not initialized yet (a lazy module): run one forward pass first"
    if t not in SUPPORTED_TYPES:
        base = next((b for b in SUPPORTED_TYPES if isinstance(m, b)), None)
        if base is not None:
            return (f"its type {t.__qualname__} is a subclass of nn.{base.__name__}: trqat replaces the layer and "
                    f"its forward, which {t.__qualname__} may change (or, like MultiheadAttention's out_proj, "
                    f"not use at all)")
        return (f"trqat cannot quantize {t.__qualname__} layers (supported: "
                f"{', '.join('nn.' + b.__name__ for b in SUPPORTED_TYPES)})")
    if getattr(m, "padding_mode", "zeros") != "zeros":
        return f"it uses padding_mode={m.padding_mode!r}; trqat quantizes zero-padded convolutions only"
    if weight is None or not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        return "its weight is not a floating-point tensor"
    return None


def _is_bits(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8


def _check_bits(weight_bits: int, act_bits: int) -> None:
    if not _is_bits(weight_bits):
        raise ValueError(f"weight_bits must be an int in 1..8, got {weight_bits!r}")
    if not (_is_bits(act_bits) or (act_bits == FP_BITS and not isinstance(act_bits, bool))):
        raise ValueError(f"act_bits must be an int in 1..8, or {FP_BITS} for full-precision activations, got {act_bits!r}")
    qrange(weight_bits, True)


def _inside_ddp(model: nn.Module) -> bool:
    """Whether a DistributedDataParallel wraps `model` (or a module around it). DDP keeps no public
    list of its parameters, so its instances are found among the live objects: only when a process
    group exists, once per quantize()."""
    ddp = nn.parallel.DistributedDataParallel
    if isinstance(model, ddp):
        return True
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    return any(isinstance(o, ddp) and any(m is model for m in o.module.modules()) for o in gc.get_objects())


def quantize(model: nn.Module, weight_bits: int = 2, act_bits: int = 2, *,
             layer_types: Sequence[Type[nn.Module]] = (nn.Conv1d, nn.Conv2d, nn.Linear),
             include: Patterns = None, exclude: Patterns = None, keep_first_last: bool = True,
             per_channel: bool = False, signed_act: Patterns = None, unsigned_act: Patterns = None,
             output_scale: Union[Patterns, bool] = None, layer_bits: Optional[Mapping[str, int]] = None,
             inplace: bool = True) -> nn.Module:
    """Replace the model's Conv1d/Conv2d/Linear layers by quantized ones; return the model.

    - weight_bits: 1..8 (1 = binary, sign). act_bits: 1..8, or 32 to keep input activations in full
      precision.
    - layer_types: which of nn.Conv1d, nn.Conv2d, nn.Linear to quantize (exact types: subclasses
      are left alone with a warning, see below).
    - include / exclude: fnmatch patterns on module names as in `model.named_modules()`
      ("features.*", "*.conv2", "blocks.[0-3].*"). A pattern naming a module also covers its
      children ("layer1" means everything inside layer1). None includes everything / excludes
      nothing. A pattern that matches no module name is an error (a typo must not pass silently).
    - keep_first_last: the model's first and last weight layers (conv or linear, in module
      registration order, which is usually the forward order) stay full precision, as in the paper.
    - per_channel: one weight scale per output channel instead of one per layer.
    - signed_act: patterns of layers whose inputs can be negative (after a LayerNorm, a residual
      sum, a layer without ReLU): their activation quantizer is signed. By default activations are
      quantized unsigned (levels 0..2^b-1); a layer that sees negative inputs on its first training
      forward warns once, naming it.
    - unsigned_act: patterns of layers whose unsigned quantizer is intended although their inputs
      can be slightly negative (after a GELU): no warning for them.
    - output_scale: patterns of layers that get a learnable output scale, for layers that no
      normalization follows (the quantized output is fixed-point, docs/method.md); True for all, False
      or None for none.
    - layer_bits: {pattern: bits} per-layer weight bit-widths (1..8) that override weight_bits.
      The first pattern (in the mapping's order) that matches a quantized layer's name, or the
      name of a module around it, sets its bits. A pattern that matches no quantized layer is an
      error.
    - inplace: False quantizes a deep copy and leaves `model` untouched.

    Quantize before you build the optimizer: the quantized layers are new modules (the latent
    weights and biases keep their values, and with inplace=True the very same Parameter objects, so
    an optimizer built before still holds them, but not the new quantizer scales).

    Raises ValueError, without changing the model, for: a layer matched by `include` that cannot be
    quantized (ConvTranspose, Conv3d, a lazy module, padding modes other than zeros, a subclass of a
    supported type), a layer type outside the supported ones in `layer_types`, bad bit-widths,
    patterns matching nothing, and a model in which no layer is left to quantize.
    """
    _check_bits(weight_bits, act_bits)
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize() needs a torch.nn.Module, got {type(model).__name__}")
    if _inside_ddp(model):
        raise ValueError("quantize() after DistributedDataParallel: DDP keeps the ranks in step only for the "
                         "parameters it was built with, so the quantizers' new scales would train apart on each "
                         "rank. Quantize first, then wrap: model = DistributedDataParallel(quantize(model), ...)")
    types = tuple(layer_types)
    for t in types:
        if t not in SUPPORTED_TYPES:
            raise ValueError(f"layer_types: trqat cannot quantize {getattr(t, '__qualname__', t)!r} layers; "
                             f"supported: {', '.join('nn.' + b.__name__ for b in SUPPORTED_TYPES)}")
    inc, exc = _patterns(include, "include"), _patterns(exclude, "exclude")
    signed = ["*"] if signed_act is True else _patterns(signed_act, "signed_act")
    unsigned = _patterns(unsigned_act, "unsigned_act")
    outs = ["*"] if output_scale is True else [] if output_scale is False else _patterns(output_scale, "output_scale")
    bits_by_pattern = _layer_bits(layer_bits)
    _check_patterns(model, {"include": inc, "exclude": exc, "signed_act": signed, "unsigned_act": unsigned,
                            "output_scale": outs})
    if not inplace:
        model = copy.deepcopy(model)

    weight_layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)]
    first_last = set()
    if keep_first_last and weight_layers:
        first_last = {weight_layers[0][0], weight_layers[-1][0]}
    targets: List[Tuple[str, nn.Module]] = []
    problems: List[str] = []
    skipped: List[str] = []
    unsupported: List[str] = []  # ConvTranspose, Conv3d, Bilinear: kinds trqat has no quantizer for
    for name, m in weight_layers:
        if name in first_last or (exc and _matches(name, exc)):
            continue
        explicit = bool(inc) and _matches(name, inc)
        if inc and not explicit:
            continue
        why = _why_not(m) if name else "the model itself is a single layer: wrap it, e.g. nn.Sequential(model)"
        if why is not None:
            already = isinstance(m, QuantLayer)
            subclass = type(m) not in SUPPORTED_TYPES and any(isinstance(m, b) for b in SUPPORTED_TYPES)
            if (explicit or "lazy module" in why) and not already:
                problems.append(f"'{name or '(the model itself)'}' ({type(m).__qualname__}): {why}")
            elif subclass and not already and any(isinstance(m, t) for t in types):
                skipped.append(f"'{name}' ({type(m).__qualname__})")
            elif not already and type(m) in types:
                problems.append(f"'{name}' ({type(m).__qualname__}): {why}")
            elif not already and not subclass and type(m) not in SUPPORTED_TYPES:
                unsupported.append(f"'{name}' ({type(m).__qualname__})")
            continue
        if type(m) in types:
            targets.append((name, m))
    if problems:
        raise ValueError("trqat.quantize cannot quantize " + "; ".join(problems) +
                         ". Leave these layers out with exclude=[...] (or adjust include).")
    if skipped:
        warnings.warn("trqat.quantize left these layers in full precision: " + ", ".join(skipped) +
                      " (subclasses of supported layer types; name them in include=... to get an error "
                      "explaining why)", stacklevel=2)
    if unsupported:
        warnings.warn("trqat.quantize left these layers in full precision: " + ", ".join(unsupported) +
                      f" (trqat quantizes {', '.join('nn.' + b.__name__ for b in SUPPORTED_TYPES)} only; "
                      "exclude=[...] says that you keep them in full precision on purpose)", stacklevel=2)
    if not targets:
        detail = []
        if weight_layers:
            detail.append(f"it has {len(weight_layers)} weight layer(s)")
            done = sum(isinstance(m, QuantLayer) for _, m in weight_layers)
            if done:
                detail.append(f"{done} of them already quantized")
            if keep_first_last and len(weight_layers) <= 2:
                detail.append("keep_first_last=True keeps the first and the last in full precision")
        else:
            detail.append("it has no Conv1d, Conv2d or Linear layer")
        if inc or exc:
            detail.append(f"include={inc or None}, exclude={exc or None}")
        detail.append(f"layer_types=({', '.join('nn.' + t.__name__ for t in types)})")
        raise ValueError("trqat.quantize found no layer to quantize in the model: " + "; ".join(detail))
    target_names = [n for n, _ in targets]
    for pat in bits_by_pattern:
        if not any(_matches(n, [pat]) for n in target_names):
            raise ValueError(f"layer_bits pattern {pat!r} matches no layer that is quantized (they are: "
                             f"{_sample(target_names)})")

    for name, m in targets:
        qcls = SUPPORTED_TYPES[type(m)]
        kwargs = {}
        if _matches(name, signed):
            kwargs["act_signed"] = True
        if _matches(name, outs):
            kwargs["output_scale"] = True
        bits = next((b for pat, b in bits_by_pattern.items() if _matches(name, [pat])), weight_bits)
        q = qcls.from_float(m, bits, act_bits, per_channel, **kwargs)  # type: ignore[attr-defined]
        # Keep the very Parameter objects: an optimizer built before quantize() still holds them.
        q.weight = m.weight
        if m.bias is not None:
            q.bias = m.bias
        q.train(m.training)
        if act_bits != FP_BITS and not kwargs.get("act_signed") and not _matches(name, unsigned):
            q.register_forward_pre_hook(_NegativeInputCheck(name))
        replace_module(model, name, q)
    return model


OUTPUT_SCALE_MODES = ("auto", "on", "off")
# The keys of the config's quant section that quantize_from_config reads (the scale rules are scales.py's).
QUANT_KEYS = ("weight_bits", "act_bits", "first_last_fp", "full_precision", "per_channel", "output_scale", "layer_bits")


def quantize_from_config(model: nn.Module, quant: Mapping[str, Any]) -> nn.Module:
    """Quantize `model` in place as the config's `quant` section says: the managed runs' way into
    `quantize`, and the one place where the config's words map onto its arguments.

    | config (`quant.*`)           | quantize()                                                 |
    |------------------------------|------------------------------------------------------------|
    | weight_bits, act_bits        | weight_bits, act_bits (weight_bits 32: nothing quantized)  |
    | per_channel, layer_bits      | per_channel, layer_bits                                    |
    | first_last_fp                | keep_first_last                                            |
    | full_precision               | exclude, with the model's quant_hints["full_precision"]    |
    | output_scale auto / on / off | output_scale = quant_hints["output_scale"] / True / False  |
    | (the model's quant_hints)    | signed_act, unsigned_act                                   |

    `quant_hints` is what a model knows about itself (models.py): layers the architecture keeps
    real-valued, inputs that can be negative, layers no normalization follows.
    """
    missing = [key for key in QUANT_KEYS if key not in quant]
    if missing:
        raise ValueError(f"quant: {', '.join(missing)} missing: pass the resolved config's quant section "
                         f"(`trqat config` prints it; every key has its default there)")
    weight_bits, act_bits = quant["weight_bits"], quant["act_bits"]
    full_precision = list(quant["full_precision"])
    mode = quant["output_scale"]
    if mode not in OUTPUT_SCALE_MODES:
        raise ValueError(f"quant.output_scale must be one of {', '.join(OUTPUT_SCALE_MODES)}, got {mode!r}")
    _check_patterns(model, {"quant.full_precision": full_precision})  # named as in the config
    if weight_bits == FP_BITS:
        if act_bits != FP_BITS:
            warnings.warn("quant.weight_bits is 32: the model stays full precision and act_bits "
                          f"{act_bits} is ignored (activations are quantized only in quantized layers)")
        if quant["layer_bits"]:
            raise ValueError("quant.layer_bits needs quantized weights, but quant.weight_bits is 32")
        return model
    # A model's quant_hints hold only the keys that apply to it (models.py): each one is optional.
    hints: Dict[str, List[str]] = getattr(model, "quant_hints", None) or {}
    output_scale = {"auto": hints.get("output_scale") or False, "on": True, "off": False}[mode]
    try:
        return quantize(model, weight_bits, act_bits, keep_first_last=quant["first_last_fp"],
                        exclude=full_precision + list(hints.get("full_precision", [])),
                        per_channel=quant["per_channel"], signed_act=hints.get("signed_act"),
                        unsigned_act=hints.get("unsigned_act"), output_scale=output_scale,
                        layer_bits=quant["layer_bits"] or None)
    except (TypeError, ValueError) as e:
        raise ValueError(f"quant: {e}") from None


class _NegativeInputCheck:
    """One-shot check on the first training forward: unsigned activation quantizers turn negative
    inputs into 0, which is right after a ReLU and wrong elsewhere."""

    def __init__(self, name: str):
        self.name = name
        self.done = False

    def __call__(self, module: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> None:
        if self.done or not module.training:
            return
        self.done = True
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and x.is_floating_point() and bool((x < 0).any()):
            warn_user(f"trqat: layer '{self.name}' gets negative inputs, but its {module.act_bits}-bit activation "
                      f"quantizer is unsigned (levels 0..{2 ** module.act_bits - 1}): negative inputs become 0. "
                      f"Pass signed_act=['{self.name}'] to trqat.quantize if that is not intended.", past_torch=True)

    # torch keeps hooks in the module's state; make copies (deepcopy, pickling) harmless
    def __deepcopy__(self, memo: dict) -> "_NegativeInputCheck":
        clone = _NegativeInputCheck(self.name)
        clone.done = self.done
        return clone
