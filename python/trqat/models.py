"""Models, built by name from the run config and then quantized.

Every builder takes (in_channels, num_classes, image_size) and returns a full-precision nn.Module.
A model may carry `quant_hints`, a dict of fnmatch pattern lists over its module names that
adapt.quantize_from_config passes on to trqat.quantize:

- "full_precision": layers the architecture keeps real-valued (ReActNet's shortcut convs);
- "signed_act": layers whose input can be negative (signed activation quantizer);
- "unsigned_act": layers whose input can be slightly negative, unsigned on purpose (no warning);
- "output_scale": layers that no normalization follows (output_scale "auto").

| name | what | notes |
|---|---|---|
| resnet20 | CIFAR ResNet-20 (option-A shortcuts) | any image size |
| resnet18/34/50 | torchvision definitions | stem adapted, below |
| mobilenetv2 | torchvision definition | stem adapted, below; signed inputs of linear bottlenecks |
| reactnet18 | ReActNet on ResNet-18 (Liu et al. 2020) | binary 3x3 convs, RSign/RPReLU, real shortcuts |
| deit_tiny / deit_small | ViT/DeiT (embed 192/384, depth 12, heads 3/6) | patch 16 (image >= 64) else 4 |

Stems: the stem conv is rebuilt for `in_channels`. For small inputs (image_size <= 64) the
ImageNet models get a CIFAR-style stem: a 3x3 conv with stride 1 and no max-pool (ResNets,
ReActNet); MobileNetV2's first conv gets stride 1. For larger inputs the ImageNet stem stays
(ResNets: 7x7 stride 2 + max-pool; MobileNetV2: 3x3 stride 2).

No weights are ever downloaded: torchvision definitions are built with weights=None; use
model.init_checkpoint for pretrained full-precision weights (load_checkpoint_weights).
"""
from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import extras
from .adapt import quantize_from_config
from .checkpoint import load_checkpoint_weights
from .factories import FactoryError, call_factory
from .quant import FP_BITS

SMALL_IMAGE = 64  # image_size <= this: CIFAR-style stem


# --- CIFAR ResNet-20 ---------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """CIFAR ResNet block with an option-A shortcut (strided subsample + zero channel padding)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images (He et al. 2016, sec. 4.2): 3 stages of n blocks, widths 16/32/64."""

    def __init__(self, blocks_per_stage: int, in_channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> nn.Module:
    return CifarResNet(3, in_channels, num_classes)


# --- torchvision ResNets and MobileNetV2 -------------------------------------------------------
def _torchvision(name: str, num_classes: int) -> nn.Module:
    fn = getattr(extras.torchvision(f"the model {name}").models, name)
    try:
        return fn(weights=None, num_classes=num_classes)
    except TypeError:  # torchvision < 0.13
        return fn(pretrained=False, num_classes=num_classes)


def _conv_like(old: nn.Conv2d, in_channels: int, kernel: int, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, old.out_channels, kernel, stride, kernel // 2, bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _tv_resnet(name: str) -> Callable[..., nn.Module]:
    def build(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
        model = _torchvision(name, num_classes)
        if image_size <= SMALL_IMAGE:
            model.conv1 = _conv_like(model.conv1, in_channels, 3, 1)
            model.maxpool = nn.Identity()
        else:
            model.conv1 = _conv_like(model.conv1, in_channels, 7, 2)
        model.quant_hints = {}  # every quantized layer follows a ReLU and precedes a BN
        return model
    build.__name__ = name
    return build


resnet18, resnet34, resnet50 = _tv_resnet("resnet18"), _tv_resnet("resnet34"), _tv_resnet("resnet50")


def mobilenetv2(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """torchvision MobileNetV2. The inputs of each block's first conv (and of the final 1x1 conv)
    are the previous block's linear-bottleneck output, which can be negative: those layers get
    signed activation quantizers. Every other quantized layer follows a ReLU6."""
    model = _torchvision("mobilenet_v2", num_classes)
    stem = model.features[0][0]
    model.features[0][0] = _conv_like(stem, in_channels, 3, 1 if image_size <= SMALL_IMAGE else 2)
    signed, linear_input = [], False
    for i, block in enumerate(model.features):
        first = f"features.{i}.conv.0.0" if hasattr(block, "conv") else f"features.{i}.0"
        if linear_input:
            signed.append(first)
        linear_input = hasattr(block, "conv")  # an InvertedResidual ends with conv + BN, no activation
    model.quant_hints = {"signed_act": signed}
    return model


# --- ReActNet-18 -------------------------------------------------------------------------------
class LearnableBias(nn.Module):
    """A learnable per-channel shift, x + b (ReActNet's "move")."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, per-channel PReLU, shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in, self.prelu, self.shift_out = LearnableBias(channels), nn.PReLU(channels, 0.25), LearnableBias(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_out(self.prelu(self.shift_in(x)))


class ReActUnit(nn.Module):
    """One binary 3x3 conv with its own shortcut (Bi-Real/ReActNet style):

        out = RPReLU( BN( conv3x3( RSign(x) ) ) + shortcut(x) )

    RSign(x) = the conv's 1-bit signed activation quantizer applied to x + shift (`move`, a learnable
    per-channel shift). The shortcut is the identity, or, when the shape changes, real-valued:
    AvgPool2d(2) (stride 2) + full-precision 1x1 conv + BN (module `downsample`).
    """

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.move = LearnableBias(in_planes)
        self.conv = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(planes)
        self.act = RPReLU(planes)
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(2, 2) if stride != 1 else nn.Identity(),
                nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(self.bn(self.conv(self.move(x))) + residual)


class ReActNet18(nn.Module):
    """ReActNet on a ResNet-18 backbone: 4 stages (64/128/256/512) of 2 basic blocks, each basic
    block two ReActUnits (16 binary 3x3 convs); real-valued stem conv and classifier."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int):
        super().__init__()
        small = image_size <= SMALL_IMAGE
        self.conv1 = nn.Conv2d(in_channels, 64, 3 if small else 7, 1 if small else 2, 1 if small else 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        units, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(4):  # 2 basic blocks x 2 units
                units.append(ReActUnit(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*units)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # real-valued shortcuts; binary (signed) activations into every binary conv
        self.quant_hints = {"full_precision": ["*.downsample"], "signed_act": ["layers.*.conv"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.maxpool(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def reactnet18(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return ReActNet18(in_channels, num_classes, image_size)


# --- DeiT --------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, dim]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DeiT(nn.Module):
    """A plain ViT/DeiT classifier (class token only; no distillation token, no stochastic depth).

    Patch size 16 for image_size >= 64, else 4 (CIFAR-size inputs would otherwise give 4 tokens).
    Quantized by trqat.quantize: every Linear in the blocks (qkv, proj, fc1, fc2); the patch
    embedding conv and the head stay full precision as first/last. The inputs of qkv and fc1
    (LayerNorm outputs) and of proj (attention outputs) can be negative: signed activation
    quantizers. fc2's input is a GELU output (>= -0.17): unsigned on purpose. No normalization follows any of
    these Linear layers (their outputs enter the residual stream), so "auto" output scales are on
    for all of them.
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, dim: int, depth: int,
                 heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        patch = 16 if image_size >= 64 else 4
        if image_size % patch:
            raise ValueError(f"DeiT: image_size {image_size} is not a multiple of the patch size {patch}")
        n = (image_size // patch) ** 2
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.quant_hints = {"signed_act": ["blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1"],
                            "unsigned_act": ["blocks.*.mlp.fc2"], "output_scale": ["blocks.*"]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def deit_tiny(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return DeiT(in_channels, num_classes, image_size, dim=192, depth=12, heads=3)


def deit_small(in_channels: int = 3, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    return DeiT(in_channels, num_classes, image_size, dim=384, depth=12, heads=6)


MODELS: Dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20, "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
    "mobilenetv2": mobilenetv2, "reactnet18": reactnet18, "deit_tiny": deit_tiny, "deit_small": deit_small,
}


def build_fp_model(name: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """The full-precision model `name` (no quantization)."""
    if name not in MODELS:
        raise ValueError(f"unknown model.name {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](in_channels=in_channels, num_classes=num_classes, image_size=image_size)


def build_model(cfg: Dict[str, Any]) -> nn.Module:
    """Build cfg["model"] by name (or with model.factory), load model.init_checkpoint (before quantization, so that the
    weight scales are initialised from those weights), then quantize with cfg["quant"]."""
    mcfg, qcfg = cfg["model"], cfg["quant"]
    if mcfg["factory"]:
        model = call_factory(mcfg["factory"], mcfg["kwargs"], "model.factory")
        if not isinstance(model, nn.Module):
            raise FactoryError(f"model.factory = {mcfg['factory']!r} returned {type(model).__name__}, not an nn.Module")
    else:
        model = build_fp_model(mcfg["name"], mcfg["in_channels"], mcfg["num_classes"], mcfg["image_size"])
    if mcfg["init_checkpoint"]:
        load_checkpoint_weights(model, mcfg["init_checkpoint"])
    return quantize_from_config(model, qcfg)


__all__ = ["MODELS", "build_model", "build_fp_model", "load_checkpoint_weights",
           "resnet20", "resnet18", "resnet34", "resnet50", "mobilenetv2", "reactnet18", "deit_tiny",
           "deit_small", "FP_BITS"]
