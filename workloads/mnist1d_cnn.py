"""MNIST-1D classified by a 1-D convolutional network.

Same procedurally generated MNIST-1D data as `mnist1d_mlp` (shared cache file), where
convolutions, being shift-equivariant, reach far higher accuracy than an MLP: the optimizer
must get a strided conv net with GroupNorm to that level quickly.
Targets, budget and step hint are in configs/workload/mnist1d_cnn.yaml.
"""

from __future__ import annotations

from torch import nn

from harness.core.checks import check_choice, whole_number
from harness.core.spec import Tensor
from workloads.mnist1d_mlp import ACTIVATIONS, Mnist1dWorkload

GROUPS = 4
NORMS = {"group": f"GroupNorm ({GROUPS} groups) after each conv", "none": "no normalization"}
SIGNAL_LENGTH = 40


class Mnist1dCnn(Mnist1dWorkload):
    def __init__(self, *, channels: int = 32, depth: int = 3, norm: str = "group", **common):
        self.channels, self.depth, self.norm = whole_number("channels", channels), whole_number("depth", depth), check_choice("norm", norm, NORMS)
        if self.norm == "group" and self.channels % GROUPS:
            raise ValueError(f"channels={channels} must be a multiple of {GROUPS} for norm group (GroupNorm's {GROUPS} groups)")
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        layers: list[nn.Module] = [Unsqueeze()]
        width, length = 1, SIGNAL_LENGTH
        for i in range(self.depth):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv1d(width, self.channels, 5, stride=stride, padding=2)]
            if self.norm == "group":
                layers += [nn.GroupNorm(GROUPS, self.channels)]
            layers += [ACTIVATIONS[self.activation]()]
            width, length = self.channels, (length - 1) // stride + 1
        # (B, C, L) -> (B, C * L): the head sees where a feature is, which the digit shape needs
        layers += [nn.Flatten(), nn.Dropout(0.0), nn.Linear(width * length, 10)]
        return nn.Sequential(*layers)


class Unsqueeze(nn.Module):
    """(B, L) signals -> (B, 1, L): one input channel."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1)
