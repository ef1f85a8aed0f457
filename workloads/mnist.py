"""MNIST (torchvision's files) classified by an MLP. Optional, not in the CPU suite.

Data: `data_dir/MNIST/raw/` in torchvision's layout, downloaded there by torchvision when the
folder is empty and `download` is true (`workloads.data.torchvision_files`). The 60,000
training images are shuffled by the dataset seed; the last `validation_size` become the
validation split, the 10,000 official test images the test split. Images stay uint8 on the
device; the model's first layer standardizes them. Targets are provisional until
`pacer calibrate` sets them (see configs/workload/mnist.yaml).
"""

from __future__ import annotations

from torch import nn

from harness.core.checks import whole_number
from workloads.data.torchvision_files import MNIST, TorchvisionImages
from workloads.mnist1d_mlp import ACTIVATIONS


class Mnist(TorchvisionImages):
    files = MNIST

    def __init__(self, *, hidden: int = 256, depth: int = 2, **common):
        self.hidden, self.depth = whole_number("hidden", hidden), whole_number("depth", depth)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        layers: list[nn.Module] = [self.standardize(), nn.Flatten()]  # (B, 784)
        width = 28 * 28
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), ACTIVATIONS[self.activation](), nn.Dropout(0.0)]
            width = self.hidden
        return nn.Sequential(*layers, nn.Linear(width, 10))
