"""trqat: quantization-aware training with transition-rate scheduling (worker side)."""
__version__ = "0.1.0"

from .protocol import PROTOCOL_VERSION  # noqa: E402
from .quant import QConv1d, QConv2d, QLinear, QuantLayer, quantized_layers  # noqa: E402
from .transitions import TransitionCounter  # noqa: E402
from .models import MODELS, build_fp_model, build_model, load_checkpoint_weights, resnet20  # noqa: E402
from .trainer import Trainer, build_optimizer, distillation_loss, optimizer_classes, resolve_device  # noqa: E402
from .adapt import TransitionTracker, count_transitions, quantize, quantize_from_config  # noqa: E402
from .client import Client, split_param_groups  # noqa: E402
from .convert import IntConv1d, IntConv2d, IntLayer, IntLinear, convert  # noqa: E402
from .deploy import export_onnx, load_exported, save_exported  # noqa: E402

__all__ = ["__version__", "PROTOCOL_VERSION", "QConv2d", "QLinear", "QuantLayer", "quantize_from_config",
           "quantized_layers", "TransitionCounter", "MODELS", "build_model", "build_fp_model",
           "load_checkpoint_weights", "resnet20", "Trainer", "build_optimizer", "distillation_loss",
           "optimizer_classes", "resolve_device", "QConv1d", "TransitionTracker", "count_transitions",
           "quantize", "Client", "split_param_groups", "convert", "IntLayer", "IntConv1d", "IntConv2d",
           "IntLinear", "save_exported", "load_exported", "export_onnx"]
