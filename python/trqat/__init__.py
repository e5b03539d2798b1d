"""trqat: quantization-aware training with transition-rate scheduling (worker side)."""
__version__ = "0.1.0"

from .protocol import PROTOCOL_VERSION  # noqa: E402
from .quant import QConv2d, QLinear, QuantLayer, quantize_model, quantized_layers  # noqa: E402
from .transitions import TransitionCounter  # noqa: E402
from .models import build_model, resnet20  # noqa: E402
from .trainer import Trainer, resolve_device  # noqa: E402

__all__ = ["__version__", "PROTOCOL_VERSION", "QConv2d", "QLinear", "QuantLayer", "quantize_model",
           "quantized_layers", "TransitionCounter", "build_model", "resnet20", "Trainer", "resolve_device"]
