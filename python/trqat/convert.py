"""Inference models: quantized layers that hold integer levels instead of latent weights.

    model = trqat.quantize(MyNet())        # QConv1d / QConv2d / QLinear with latent float weights
    ...                                    # train
    inference = trqat.convert(model)       # IntConv1d / IntConv2d / IntLinear: int8 levels + scales

This is torch.ao's `convert` step. An inference layer keeps what the quantized layer's forward
pass needs and nothing else:

- `weight_levels`: the integer levels x_int of the weights (int8 storage; every bit-width 1..8
  fits), exactly those the training layer computes with;
- `weight_scale`: the scale the levels came from (kept for the record and for export; the forward
  pass does not use it, because the modified LSQ quantizer computes with x_int / gamma);
- `act_scale` (when the inputs are quantized), `output_scale` (when the layer has one), `bias`.

Its forward pass is the training layer's in eval mode, written with the same functions, so the
logits of a converted model equal the training model's bit for bit on the CPU. Everything that is
not a quantized layer (BN, full-precision first and last layers, ...) is left as it is.
`QuantLayer.to_float()` goes the other way: the plain float layer with the latent weights.
"""
import copy
import warnings
from typing import Any, Dict, Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quant import FP_BITS, QConv1d, QConv2d, QLinear, QuantLayer, qrange, quantize_levels, quantized_layers, replace_module

__all__ = ["convert", "IntLayer", "IntConv1d", "IntConv2d", "IntLinear", "int_layers", "ONNX_OPSET"]

#: The ONNX opset the exported graphs use (DequantizeLinear needs 10+, Clip with bounds 11+,
#: Round 11+); 13 is the newest every supported torch (1.13 and later) and ONNX Runtime export and run.
ONNX_OPSET = 13


class _DequantizeLinear(torch.autograd.Function):
    """levels * step as one ONNX DequantizeLinear node, so the exported graph stores int8 levels.

    step = 1/gamma is a power of two: the product is exact, in PyTorch and in any ONNX runtime."""

    @staticmethod
    def forward(ctx: Any, levels: torch.Tensor, step: float) -> torch.Tensor:  # type: ignore[override]
        return levels.to(torch.float32) * step

    @staticmethod
    def symbolic(g: Any, levels: Any, step: float) -> Any:
        scale = g.op("Constant", value_t=torch.tensor(step, dtype=torch.float32))
        zero_point = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
        return g.op("DequantizeLinear", levels, scale, zero_point)


class IntLayer(nn.Module):
    """What IntConv1d/IntConv2d/IntLinear share: the buffers, and the training layer's forward pass.

    `spec()` describes the layer in plain values (bits, quantizer kinds, geometry); `from_spec`
    builds an empty layer from it (the export format stores the spec and the buffers).
    """

    kind: str
    quant_type: Type[QuantLayer]
    geometry_keys: Tuple[str, ...]  # constructor arguments, named as on the float layer

    def __init__(self, weight_shape: Tuple[int, ...], bias: bool, *, weight_bits: int, act_bits: int,
                 act_signed: bool = False, per_channel: bool = False, output_scale: bool = False):
        super().__init__()
        qrange(weight_bits, True)  # validates the bit widths
        if act_bits != FP_BITS:
            qrange(act_bits, act_signed)
        self.weight_bits, self.act_bits, self.act_signed = weight_bits, act_bits, bool(act_signed)
        self.per_channel, self.has_output_scale = bool(per_channel), bool(output_scale)
        self.register_buffer("weight_levels", torch.zeros(weight_shape, dtype=torch.int8))
        scale_shape = (weight_shape[0],) + (1,) * (len(weight_shape) - 1) if per_channel else ()
        self.register_buffer("weight_scale", torch.ones(scale_shape))
        if act_bits != FP_BITS:
            self.register_buffer("act_scale", torch.ones(()))
        if output_scale:
            self.register_buffer("output_scale", torch.ones(()))
        self.register_buffer("bias", torch.zeros(weight_shape[0]) if bias else None)

    # --- what the subclasses fill in ----------------------------------------------------------
    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def _bias_for(self, y: torch.Tensor) -> torch.Tensor:
        return self.bias

    def _geometry(self) -> Dict[str, Any]:
        return {k: _plain(getattr(self, k)) for k in self.geometry_keys}

    # --- the forward pass: QuantLayer.forward in eval mode ------------------------------------
    def dequantized_weight(self) -> torch.Tensor:
        """levels / gamma: the weight the training layer computes with (float32)."""
        step = 1.0 / qrange(self.weight_bits, True)[2]
        if torch.onnx.is_in_onnx_export():
            return _DequantizeLinear.apply(self.weight_levels, step)
        return self.weight_levels.to(torch.float32) * step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits != FP_BITS:
            x = quantize_levels(x, self.act_scale, self.act_bits, self.act_signed)
        weight = self.dequantized_weight()
        if not self.has_output_scale:
            return self._op(x, weight, self.bias)
        y = self._op(x, weight, None) * self.output_scale  # the scale applies before the bias
        return y if self.bias is None else y + self._bias_for(y)

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def from_quantized(cls, q: QuantLayer) -> "IntLayer":
        """The inference form of a trained QuantLayer (its current levels and scales)."""
        int_cls = INT_TYPES[type(q)]
        if q.weight.dtype != torch.float32:
            raise ValueError(f"trqat.convert supports float32 layers, this {type(q).__name__} is {q.weight.dtype}")
        layer = int_cls(*(getattr(q, k) for k in int_cls.geometry_keys), bias=q.bias is not None,
                        weight_bits=q.weight_bits, act_bits=q.act_bits, act_signed=q.act_signed,
                        per_channel=q.per_channel, output_scale=q.has_output_scale)
        with torch.no_grad():
            layer.weight_levels.copy_(q.weight_levels())
            layer.weight_scale.copy_(q.weight_scale)
            if q.act_bits != FP_BITS:
                layer.act_scale.copy_(q.act_scale)
            if q.has_output_scale:
                layer.output_scale.copy_(q.output_scale)
            if q.bias is not None:
                layer.bias.copy_(q.bias)
        return layer.to(q.weight.device)

    def spec(self) -> Dict[str, Any]:
        """The layer in plain values: kind, bits, quantizer kinds, geometry (JSON-ready)."""
        return {"kind": self.kind, "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "act_signed": self.act_signed, "per_channel": self.per_channel,
                "output_scale": self.has_output_scale, "bias": self.bias is not None,
                "weight_shape": list(self.weight_levels.shape), **self._geometry()}

    @staticmethod
    def from_spec(spec: Dict[str, Any]) -> "IntLayer":
        """An inference layer of the described kind and shape (buffers still to be loaded)."""
        kinds = {c.kind: c for c in INT_TYPES.values()}
        if spec.get("kind") not in kinds:
            raise ValueError(f"unknown quantized layer kind {spec.get('kind')!r} (known: {', '.join(kinds)})")
        cls = kinds[spec["kind"]]
        return cls(*(spec[k] for k in cls.geometry_keys), bias=bool(spec["bias"]), weight_bits=spec["weight_bits"],
                   act_bits=spec["act_bits"], act_signed=spec["act_signed"], per_channel=spec["per_channel"],
                   output_scale=spec["output_scale"])

    def extra_repr(self) -> str:
        return (", ".join(f"{k}={v}" for k, v in self._geometry().items())
                + f", weight_bits={self.weight_bits}, act_bits={self.act_bits}"
                + (", act_signed=True" if self.act_signed else "")
                + (", per_channel=True" if self.per_channel else "")
                + (", output_scale=True" if self.has_output_scale else ""))


_CONV_GEOMETRY = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class _IntConv(IntLayer):
    """What IntConv1d and IntConv2d share: the convolution's geometry and a per-channel bias."""

    conv_fn: Any
    dims: int
    geometry_keys = _CONV_GEOMETRY

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True, **quant: Any):
        n = self.dims
        tup = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,) * n  # noqa: E731
        super().__init__((out_channels, in_channels // groups, *tup(kernel_size)), bias, **quant)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        # the call nn.ConvNd._conv_forward makes for padding_mode="zeros" (the only one quantized)
        return type(self).conv_fn(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def _bias_for(self, y: torch.Tensor) -> torch.Tensor:
        return self.bias.view(1, -1, *([1] * (y.dim() - 2)))


class IntConv1d(_IntConv):
    """The inference form of QConv1d."""

    kind, quant_type, dims, conv_fn = "conv1d", QConv1d, 1, staticmethod(F.conv1d)


class IntConv2d(_IntConv):
    """The inference form of QConv2d."""

    kind, quant_type, dims, conv_fn = "conv", QConv2d, 2, staticmethod(F.conv2d)


class IntLinear(IntLayer):
    """The inference form of QLinear."""

    kind, quant_type, geometry_keys = "linear", QLinear, ("in_features", "out_features")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **quant: Any):
        super().__init__((out_features, in_features), bias, **quant)
        self.in_features, self.out_features = in_features, out_features

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return F.linear(x, weight, bias)


#: quantized (training) layer type -> its inference form
INT_TYPES: Dict[Type[QuantLayer], Type[IntLayer]] = {c.quant_type: c for c in (IntConv1d, IntConv2d, IntLinear)}


def int_layers(model: nn.Module) -> "list[Tuple[str, IntLayer]]":
    """The inference layers of a converted model, in named_modules order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, IntLayer)]


def convert(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The inference model: every quantized layer replaced by its int8-level form (IntConv1d,
    IntConv2d, IntLinear); everything else unchanged. Its logits equal `model`'s in eval mode (bit
    for bit on the CPU). inplace=False (the default, as torch.ao's convert) leaves `model` untouched.
    The mode (train/eval) is kept: call .eval() for inference, as for the training model."""
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("trqat.convert: the model has no quantized layers (quantize it first: trqat.quantize(model))")
    if not inplace:
        model = copy.deepcopy(model)
        layers = quantized_layers(model)
    for name, q in layers:
        if q.act_bits != FP_BITS and not bool(q.act_initialized):
            warnings.warn(f"trqat.convert: layer '{name}' never saw a training batch, so its activation scale was "
                          f"never initialised from data; the inference layer keeps act_scale = {q.act_scale.item():g}",
                          stacklevel=2)
        layer = IntLayer.from_quantized(q)
        layer.train(q.training)
        replace_module(model, name, layer)
    return model
