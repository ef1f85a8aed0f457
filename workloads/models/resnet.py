"""ResNet (He et al. 2016, "v1.5": the stride sits in the 3x3 convolution) as AlgoPerf's
PyTorch ImageNet workload defines it: LeCun-normal convolutions, the last BatchNorm of each
residual branch initialised to `bn_init_scale` (0: every block starts as the identity),
a selectable activation, and a CIFAR stem (3x3, no max-pool) for 32x32 images."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workloads.models.init import lecun_normal_

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": lambda: nn.GELU(approximate="tanh"),
}


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, activation: str):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1, self.bn1 = conv(in_ch, width, 3, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv(width, out_ch, 3), nn.BatchNorm2d(out_ch)
        self.act = ACTIVATIONS[activation]()
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4 (ResNet-50 and deeper)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, activation: str):
        super().__init__()
        out_ch = width * self.expansion
        self.conv1, self.bn1 = conv(in_ch, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv(width, out_ch, 1), nn.BatchNorm2d(out_ch)
        self.act = ACTIVATIONS[activation]()
        self.downsample = _shortcut(in_ch, out_ch, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        return self.act(self.bn3(self.conv3(out)) + identity)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(conv(in_ch, out_ch, 1, stride), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], depths: list[int], *, num_classes: int = 1000, width: int = 64,
                 activation: str = "relu", bn_init_scale: float = 0.0, cifar_stem: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if cifar_stem:  # 32x32 inputs: keep the resolution
            self.stem = nn.Sequential(conv(3, width, 3), nn.BatchNorm2d(width), ACTIVATIONS[activation]())
        else:  # 224x224 -> 56x56
            self.stem = nn.Sequential(conv(3, width, 7, 2), nn.BatchNorm2d(width), ACTIVATIONS[activation](), nn.MaxPool2d(3, 2, 1))
        stages, in_ch = [], width
        for i, depth in enumerate(depths):
            blocks = []
            for j in range(depth):
                blocks.append(block(in_ch, width * 2**i, 2 if (i > 0 and j == 0) else 1, activation))
                in_ch = width * 2**i * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init(bn_init_scale)

    def _init(self, bn_init_scale: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                lecun_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=1e-2)
        nn.init.zeros_(self.fc.bias)
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.constant_(m.last_bn().weight, bn_init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, H, W)
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))  # (B, classes)


def resnet18(**kwargs: object) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet50(**kwargs: object) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)
