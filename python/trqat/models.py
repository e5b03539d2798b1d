"""Models, built by name from the run config and then quantized."""
from typing import Any, Callable, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quant import quantize_model


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


def resnet20(in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    return CifarResNet(3, in_channels, num_classes)


MODELS: Dict[str, Callable[..., nn.Module]] = {"resnet20": resnet20}


def build_model(cfg: Dict[str, Any]) -> nn.Module:
    """Build cfg["model"] by name and quantize it with cfg["quant"] (weight_bits, act_bits, ...)."""
    mcfg, qcfg = cfg["model"], cfg["quant"]
    if mcfg["name"] not in MODELS:
        raise ValueError(f"unknown model.name {mcfg['name']!r}; available: {', '.join(sorted(MODELS))}")
    model = MODELS[mcfg["name"]](in_channels=mcfg["in_channels"], num_classes=mcfg["num_classes"])
    return quantize_model(model, qcfg["weight_bits"], qcfg["act_bits"],
                          first_last_fp=qcfg.get("first_last_fp", True),
                          per_channel=qcfg.get("per_channel", False))
