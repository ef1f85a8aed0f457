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

from harness.tensor_workload import check_choice
from workloads.data.torchvision_files import FASHION_MNIST, TorchvisionImages
from workloads.mnist1d_mlp import ACTIVATIONS
from workloads.models.small_cnn import NORMS, small_cnn


class FashionMnist(TorchvisionImages):
    files = FASHION_MNIST

    def __init__(self, *, channels: tuple[int, ...] = (16, 32), norm: str = "none", **common):
        check_choice("norm", norm, NORMS)
        super().__init__(**common)
        self.channels, self.norm = tuple(int(c) for c in channels), norm

    def build_model(self) -> nn.Module:
        return nn.Sequential(self.standardize(), small_cnn(1, 28, self.channels, ACTIVATIONS[self.activation], self.norm, 10))
