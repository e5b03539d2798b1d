"""Modified LSQ quantizer and the quantized Conv1d/Conv2d/Linear layers (docs/method.md; README, "The quantizer").

For an input x and a learnable positive scale s:

    x_int = round(clip(gamma * x / s, alpha, beta))     # integer level
    x_q   = x_int / gamma                               # what the layer computes with

There is no multiplication by s after rounding, so the output is fixed-point whatever the range;
the normalization layer that follows restores the range. Where none follows (DeiT's Linear layers,
whose outputs go straight into a residual sum), an optional learnable scalar output scale `o`
multiplies the layer's output (before the bias): y = o * (x_q (*) w_q) + bias. It is initialised so
that the output range matches the full-precision layer at initialisation:

    o = mean|w| / mean|w_q|  *  s_a        (s_a: the activation scale; 1 when activations are FP)

(x_q ~ x / s_a and w_q ~ w * mean|w_q| / mean|w|, so o * x_q (*) w_q ~ x (*) w.) The weight factor is
set when the layer is built from its float weights; the s_a factor is applied once, when the
activation scale is initialised from the first training batch. Output scales are ordinary trained
parameters (no weight decay), also under TR scheduling.

Activation quantizers are unsigned (levels 0..2^b-1, docs/method.md's table) unless the model says that a
layer's input can be negative (LayerNorm or attention outputs, MobileNetV2's linear bottlenecks,
ReActNet's binary activations): then they use the weights' signed range (-2^(b-1)..2^(b-1)-1,
gamma = 2^(b-1); b = 1: sign, levels {-1, +1}).
"""
import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed

FP_BITS = 32  # weight_bits/act_bits value meaning "not quantized" (full precision)


def qrange(bits: int, signed: bool) -> Tuple[int, int, int]:
    """Return (alpha, beta, gamma) for `bits`; signed=True for weights, False for activations.

    Weights b>=2: (-2^(b-1), 2^(b-1)-1, 2^(b-1)); activations b>=2: (0, 2^b-1, 2^b);
    binary weights: (-1, 1, 1) with sign instead of round; binary activations: (0, 1, 1).
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"quantizer bits must be in 1..8, got {bits}")
    if bits == 1:
        return (-1, 1, 1) if signed else (0, 1, 1)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 2 ** (bits - 1)
    return 0, 2**bits - 1, 2**bits


def lsq_init_scale(x: torch.Tensor, bits: int, signed: bool, dim: int = -1) -> torch.Tensor:
    """LSQ's initial step size 2*mean|x|/sqrt(beta), mapped into this parameterisation.

    The quantization step here is s/gamma, so s = gamma * 2*mean|x| / sqrt(beta). For binary
    weights this gives s = 2*mean|x|, the half-width of the window where the STE passes.
    dim=-1 gives one scalar; dim=0 gives one scale per slice along dim 0 (per output channel),
    shaped [C, 1, ...] to broadcast against x.
    """
    _, beta, gamma = qrange(bits, signed)
    x = x.detach().abs()
    mean = x.mean() if dim < 0 else x.flatten(1).mean(1).view(-1, *([1] * (x.dim() - 1)))
    return (gamma * 2 * mean / math.sqrt(beta)).clamp_min(1e-8)


STD_SCALE_EPS = 1e-6  # the released code divides by |s| + 1e-6; std_init_scale adds it to s once


def std_init_scale(x: torch.Tensor, weights: bool, dim: int = -1) -> torch.Tensor:
    """The authors' released rule (docs/method.md): s = 3 std(W) for weights, 3 std(x) / sqrt(1 - 2/pi)
    for activations (the first training batch), torch's unbiased std, in the released code's order of
    operations. Its quantizer divides by |s| + 1e-6; adding the 1e-6 here once gives the same levels
    and, for s > 0, the same gradients. dim=0: one scale per output channel (as lsq_init_scale).
    """
    x = x.detach().float()
    std = x.std() if dim < 0 else x.flatten(1).std(1).view(-1, *([1] * (x.dim() - 1)))
    s = std * 3.0 if weights else std / math.sqrt(1 - 2 / math.pi) * 3.0
    return s + STD_SCALE_EPS


def scale_gradient(s: torch.Tensor, g: float) -> torch.Tensor:
    """Return s unchanged in value, with its gradient multiplied by g (LSQ's gradient scale).

    Written as s.detach() + (s*g - (s*g).detach()) rather than (s - s*g).detach() + s*g so the
    value is bit-exactly s (the added term is exactly zero), keeping levels reproducible.
    """
    sg = s * g
    return s.detach() + (sg - sg.detach())


MIN_SCALE = 1e-8  # a learnable scale pushed to <= 0 by a large step would make every level NaN or flip sign


def clipped(x: torch.Tensor, s: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """clip(gamma * x / s, alpha, beta): the real-valued level before rounding (s floored at MIN_SCALE)."""
    alpha, beta, gamma = qrange(bits, signed)
    # x / (s/gamma) is bit-identical to x / s * gamma (gamma is a power of 2) with one pass less
    return torch.clamp(x / (s.clamp_min(MIN_SCALE) / gamma), alpha, beta)


def to_levels(v: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Round clipped values to integer levels (sign with 0 -> +1 for binary weights); no STE."""
    if bits == 1 and signed:
        return torch.where(v >= 0, torch.ones_like(v), -torch.ones_like(v))
    return v.round()


def quantize_levels(x: torch.Tensor, s: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """x_int / gamma without gradients: what fake_quantize computes at inference, and what the
    converted inference layers (convert.py) compute, bit for bit."""
    return to_levels(clipped(x, s, bits, signed), bits, signed).div_(qrange(bits, signed)[2])


def fake_quantize(x: torch.Tensor, s: torch.Tensor, bits: int, signed: bool, g: float) -> torch.Tensor:
    """Fake-quantize x to x_int/gamma with straight-through gradients.

    Gradient w.r.t. x: 1/s where alpha <= gamma*x/s <= beta (binary weights: |x| <= s), else 0.
    Gradient w.r.t. s: autograd of the clipped expression, -x/s^2 inside the range and 0 outside,
    multiplied by the LSQ gradient scale g = 1/sqrt(numel * beta).
    """
    if not (torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)):
        return quantize_levels(x, s, bits, signed)  # inference: the same values without the STE's temporaries
    gamma = qrange(bits, signed)[2]
    v = clipped(x, scale_gradient(s, g), bits, signed)
    x_int = (to_levels(v, bits, signed) - v).detach() + v  # exact: the value equals the level
    return x_int / gamma


class QuantLayer(nn.Module):
    """Mixin for QConv1d/QConv2d/QLinear: weight and input-activation quantizers, and the forward pass.

    Parameters: `weight_scale` (scalar, or [out_channels, 1, ...] when per_channel),
    `act_scale` (scalar; absent when act_bits == 32) and `output_scale` (scalar; only with
    output_scale=True). Buffer `act_initialized` records whether the activation scale was
    initialised from data (lazily, on the first training forward). `act_signed` selects the
    signed activation range (inputs that can be negative).
    """

    weight: nn.Parameter
    # Scale rules (quant.weight_scale_init, quant.act_scale_init, quant.lsq_grad_scale), set per layer
    # by trqat.scales.configure_scales: "lsq" or "std" (std_init_scale); LSQ's gradient scale on or off.
    weight_scale_init = "lsq"
    act_scale_init = "lsq"
    lsq_grad_scale = True
    float_type: type  # the float layer this one replaces (nn.Conv1d, nn.Conv2d, nn.Linear)
    kind: str  # "conv1d", "conv", "linear": the worker's ready.layers and the export format name it

    def _setup_quant(self, weight_bits: int, act_bits: int, per_channel: bool,
                     act_signed: bool = False, output_scale: bool = False) -> None:
        qrange(weight_bits, True)  # validates the bit width
        if act_bits != FP_BITS:
            qrange(act_bits, act_signed)
        self.weight_bits, self.act_bits, self.per_channel = weight_bits, act_bits, per_channel
        self.act_signed, self.has_output_scale = bool(act_signed), bool(output_scale)
        dim = 0 if per_channel else -1
        # Frozen until told otherwise: TR scheduling needs it so (levels change only when weights move),
        # and a frozen parameter stays frozen under a DistributedDataParallel built before trqat's client.
        self.weight_scale = nn.Parameter(lsq_init_scale(self.weight, weight_bits, True, dim), requires_grad=False)
        if act_bits != FP_BITS:
            self.act_scale = nn.Parameter(torch.ones(()))
            # A float flag, not bool: gloo cannot broadcast bool buffers (DDP broadcasts buffers every step).
            self.register_buffer("act_initialized", torch.zeros(()))
        if output_scale:
            self.output_scale = nn.Parameter(torch.ones(()))
            self._init_output_scale()
        self._act_ready = False  # Python-side cache of act_initialized, avoids a sync per step

    def init_weight_scale(self) -> None:
        """Reset the weight scale from the current weights (LSQ rule, see lsq_init_scale), and the
        output scale (if any) from the weights and the activation scale (module docstring)."""
        with torch.no_grad():
            dim = 0 if self.per_channel else -1
            if self.weight_scale_init == "std":
                self.weight_scale.copy_(std_init_scale(self.weight, True, dim))
            else:
                self.weight_scale.copy_(lsq_init_scale(self.weight, self.weight_bits, True, dim))
        if self.has_output_scale:
            self._init_output_scale()

    def _init_output_scale(self) -> None:
        with torch.no_grad():
            w = self.weight.detach().float()
            wq = self.quantized_weight().detach().float()
            o = w.abs().mean() / wq.abs().mean().clamp_min(1e-12)
            if self.act_bits != FP_BITS and bool(self.act_initialized):
                o = o * self.act_scale.detach().float()
            self.output_scale.copy_(o.clamp_min(1e-8))

    def _float_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The float layer's own operation (F.linear, the convolution) with this layer's settings."""
        raise NotImplementedError

    def _bias_for(self, y: torch.Tensor) -> torch.Tensor:
        """The bias shaped to add to the output y (features on the last dim; convs override)."""
        return self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight = self.quantized_input(x), self.quantized_weight()
        if not self.has_output_scale:
            return self._float_forward(x, weight, self.bias)
        y = self._float_forward(x, weight, None) * self.output_scale  # the scale applies before the bias
        return y if self.bias is None else y + self._bias_for(y)

    def freeze_weight_scale(self, frozen: bool = True) -> None:
        """Frozen weight scales (TR mode, and the default) mean levels change only when the weights move;
        baseline mode trains them."""
        self.weight_scale.requires_grad_(not frozen)

    def _weight_grad_scale(self) -> float:
        if not self.lsq_grad_scale:
            return 1.0
        per_scale = self.weight.numel() // self.weight_scale.numel()
        return 1.0 / math.sqrt(per_scale * qrange(self.weight_bits, True)[1])

    def quantized_weight(self) -> torch.Tensor:
        return fake_quantize(self.weight, self.weight_scale, self.weight_bits, True, self._weight_grad_scale())

    def weight_levels(self) -> torch.Tensor:
        """The int8 levels of the current weights: exactly those the forward pass uses."""
        with torch.no_grad():  # scale_gradient adds exactly 0 to the scale, so it is not needed here
            v = clipped(self.weight, self.weight_scale, self.weight_bits, True)
            return to_levels(v, self.weight_bits, True).to(torch.int8)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits == FP_BITS:
            return x
        if self.training and not self._act_ready:
            self._init_act_scale(x)
        per_sample = x.numel() // max(x.shape[0], 1)
        g = 1.0 / math.sqrt(per_sample * qrange(self.act_bits, self.act_signed)[1]) if self.lsq_grad_scale else 1.0
        return fake_quantize(x, self.act_scale, self.act_bits, self.act_signed, g)

    def _init_act_scale(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            if not bool(self.act_initialized):
                scale = std_init_scale(x, False) if self.act_scale_init == "std" else \
                    lsq_init_scale(x.float(), self.act_bits, self.act_signed)
                # Data-parallel ranks see different batches: the mean of their scales stands for the whole
                # batch's (exactly for the LSQ rule, linear in mean|x|; closely for the std rule).
                self.act_scale.copy_(distributed.mean(scale))
                self.act_initialized.fill_(1)
                if self.has_output_scale:
                    self._init_output_scale()
        self._act_ready = True

    def _load_from_state_dict(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._act_ready = False  # re-read the loaded act_initialized flag on the next forward

    def to_float(self) -> nn.Module:
        """The float layer back (torch.ao's to_float): a plain float_type with this layer's latent
        weights and bias (the same Parameter objects), no quantizers. The reverse of from_float."""
        m = self._float_copy()
        m.weight = self.weight
        if self.bias is not None:
            m.bias = self.bias
        return m.train(self.training)

    def _float_copy(self) -> nn.Module:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, weight_bits={self.weight_bits}, act_bits={self.act_bits}"
                + (", act_signed=True" if self.act_signed else "")
                + (", per_channel=True" if self.per_channel else "")
                + (", output_scale=True" if self.has_output_scale else ""))


class QConv(QuantLayer):
    """What QConv1d and QConv2d share: nn.ConvNd's own convolution and a per-channel bias."""

    def _float_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return self._conv_forward(x, weight, bias)  # type: ignore[attr-defined]

    def _bias_for(self, y: torch.Tensor) -> torch.Tensor:
        return self.bias.view(1, -1, *([1] * (y.dim() - 2)))

    @classmethod
    def from_float(cls, m: nn.Module, weight_bits: int, act_bits: int, per_channel: bool = False,
                   act_signed: bool = False, output_scale: bool = False) -> QuantLayer:
        if m.padding_mode != "zeros":
            raise ValueError(f"{cls.__name__} supports padding_mode='zeros' only")
        q = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                m.groups, m.bias is not None, weight_bits=weight_bits, act_bits=act_bits,
                per_channel=per_channel, act_signed=act_signed, output_scale=output_scale)
        return _copy_float(q, m)

    def _float_copy(self) -> nn.Module:
        return self.float_type(self.in_channels, self.out_channels, self.kernel_size, self.stride,  # type: ignore[attr-defined]
                               self.padding, self.dilation, self.groups, self.bias is not None,  # type: ignore[attr-defined]
                               device=self.weight.device, dtype=self.weight.dtype)


class QConv1d(QConv, nn.Conv1d):
    """nn.Conv1d computing with quantized input activations and quantized weights."""

    kind, float_type = "conv1d", nn.Conv1d

    def __init__(self, *args, weight_bits: int = 2, act_bits: int = 2, per_channel: bool = False,  # type: ignore[no-untyped-def]
                 act_signed: bool = False, output_scale: bool = False, **kwargs):
        nn.Conv1d.__init__(self, *args, **kwargs)
        self._setup_quant(weight_bits, act_bits, per_channel, act_signed, output_scale)


class QConv2d(QConv, nn.Conv2d):
    """nn.Conv2d computing with quantized input activations and quantized weights."""

    kind, float_type = "conv", nn.Conv2d

    def __init__(self, *args, weight_bits: int = 2, act_bits: int = 2, per_channel: bool = False,  # type: ignore[no-untyped-def]
                 act_signed: bool = False, output_scale: bool = False, **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._setup_quant(weight_bits, act_bits, per_channel, act_signed, output_scale)


class QLinear(QuantLayer, nn.Linear):
    """nn.Linear computing with quantized input activations and quantized weights."""

    kind, float_type = "linear", nn.Linear

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 weight_bits: int = 2, act_bits: int = 2, per_channel: bool = False,
                 act_signed: bool = False, output_scale: bool = False):
        nn.Linear.__init__(self, in_features, out_features, bias)
        self._setup_quant(weight_bits, act_bits, per_channel, act_signed, output_scale)

    def _float_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        return F.linear(x, weight, bias)

    @classmethod
    def from_float(cls, m: nn.Linear, weight_bits: int, act_bits: int, per_channel: bool = False,
                   act_signed: bool = False, output_scale: bool = False) -> "QLinear":
        q = cls(m.in_features, m.out_features, m.bias is not None, weight_bits=weight_bits,
                act_bits=act_bits, per_channel=per_channel, act_signed=act_signed,
                output_scale=output_scale)
        return _copy_float(q, m)

    def _float_copy(self) -> nn.Module:
        return nn.Linear(self.in_features, self.out_features, self.bias is not None,
                         device=self.weight.device, dtype=self.weight.dtype)


#: the quantized layer types, each replacing its `float_type`
QUANT_TYPES: Tuple[type, ...] = (QConv1d, QConv2d, QLinear)


def _copy_float(q: QuantLayer, m: nn.Module) -> QuantLayer:
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    q.init_weight_scale()
    return q.to(m.weight.device, m.weight.dtype)


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where model.get_submodule(name) is."""
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def quantized_layers(model: nn.Module) -> List[Tuple[str, QuantLayer]]:
    """The quantized layers of `model` in named_modules order (the order of every counts list)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]
