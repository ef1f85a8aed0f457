"""CIFAR-10 (torchvision's python pickles) classified by a small CNN that trains on a CPU.
Optional, not in the CPU suite; `cifar10_resnet18` is the GPU workload on the same files.

Data: `data_dir/cifar-10-batches-py/` in torchvision's layout, downloaded there by torchvision
when the folder is empty and `download` is true (`workloads.data.torchvision_files`). The
50,000 training images are shuffled by the dataset seed; the last `validation_size` become
the validation split, the 10,000 official test images the test split. No augmentation: the
data stays a uint8 tensor on the device, standardized by the model's first layer. The model:
three stages of 3x3 convolution, BatchNorm, activation and 2x2 max-pool (32 -> 16 -> 8 -> 4),
then a linear classifier. Targets are provisional until `pacer calibrate` sets them (see
configs/workload/cifar10.yaml).
"""

from __future__ import annotations

from torch import nn

from workloads.data.torchvision_files import CIFAR10, TorchvisionImages
from workloads.mnist1d_mlp import ACTIVATIONS
from workloads.models.small_cnn import check_settings, small_cnn

IMAGE_SIZE = 32


class Cifar10(TorchvisionImages):
    files = CIFAR10

    def __init__(self, *, channels: tuple[int, ...] = (16, 32, 64), norm: str = "batch", **common):
        self.channels, self.norm = check_settings(channels, norm, IMAGE_SIZE)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        return nn.Sequential(self.standardize(), small_cnn(3, IMAGE_SIZE, self.channels, ACTIVATIONS[self.activation], self.norm, 10))
