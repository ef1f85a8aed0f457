"""Fashion-MNIST (torchvision's files) classified by a small CNN. Optional, not in the CPU suite.

Data: `data_dir/FashionMNIST/raw/` in torchvision's layout (the MNIST file names), downloaded
there by torchvision when the folder is empty and `download` is true
(`workloads.data.torchvision_files`); splits as in `workloads/mnist.py`. The model: two
stages of 3x3 convolution, optional normalization, activation and 2x2 max-pool (28 -> 14 -> 7),
then a linear classifier. Targets are provisional until `pacer calibrate` sets them (see
configs/workload/fashion_mnist.yaml).
"""

from __future__ import annotations

from torch import nn

from workloads.data.torchvision_files import FASHION_MNIST, TorchvisionImages
from workloads.mnist1d_mlp import ACTIVATIONS
from workloads.models.small_cnn import check_settings, small_cnn

IMAGE_SIZE = 28


class FashionMnist(TorchvisionImages):
    files = FASHION_MNIST

    def __init__(self, *, channels: tuple[int, ...] = (16, 32), norm: str = "none", **common):
        self.channels, self.norm = check_settings(channels, norm, IMAGE_SIZE)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        return nn.Sequential(self.standardize(), small_cnn(1, IMAGE_SIZE, self.channels, ACTIVATIONS[self.activation], self.norm, 10))
