"""trqat: quantization-aware training with transition-rate scheduling (the worker, and a library for
your own training scripts).

`import trqat` is light: the submodules load on first use of a name below.
"""
import importlib
from typing import Any

__version__ = "0.1.0"  # the one version number: pyproject.toml reads it, package.json must match (test/version.test.ts)

# public name -> the module that defines it
_EXPORTS = {
    "PROTOCOL_VERSION": "protocol",
    "QConv1d": "quant", "QConv2d": "quant", "QLinear": "quant", "QuantLayer": "quant", "quantized_layers": "quant",
    "TransitionCounter": "transitions",
    "MODELS": "models", "build_model": "models", "build_fp_model": "models",
    "load_checkpoint_weights": "checkpoint", "resnet20": "models",
    "Trainer": "trainer", "distillation_loss": "trainer", "resolve_device": "trainer",
    "build_optimizer": "optimizer", "optimizer_classes": "optimizer",
    "TransitionTracker": "transitions", "count_transitions": "transitions", "quantize": "adapt", "quantize_from_config": "adapt",
    "Client": "client", "LRs": "client",
    "split_param_groups": "groups", "apply_lrs": "groups",
    "convert": "convert", "IntLayer": "convert", "IntConv1d": "convert", "IntConv2d": "convert", "IntLinear": "convert",
    "save_exported": "deploy", "load_exported": "deploy", "export_onnx": "deploy",
    "tune_malloc": "allocator",
}

__all__ = ["__version__", *_EXPORTS]

# A script or worker started by a trqat controller goes with it, even before it has a session.
from .parent_death import follow_controller as _follow_controller  # noqa: E402

_follow_controller()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trqat' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list:
    return sorted(__all__)
