"""CIFAR-10 classified by a ResNet-18 (CIFAR stem: 3x3 convolution, no max-pool).

Data: torchvision's CIFAR-10 python version under `data_dir`, read (and, with `download: true`,
fetched into an empty `data_dir`) by `workloads.data.torchvision_files`, which the CPU
workload `cifar10` shares; tests never download. The 50,000
training images are split 45,000 train / 5,000 validation (the last 5,000); the 10,000 test
images are the test split. Standard augmentation: pad by 4 and random 32x32 crop, horizontal
flip; per-channel normalisation. Targets are provisional (see records/calibration/cifar10_resnet18.json)
until `pacer calibrate` sets them on a GPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision import transforms

from harness.core.checks import flag, whole_number
from harness.core.errors import PacerUserError
from harness.plugins.image_workload import ImageClassifierWorkload, ImageExample
from harness.plugins.loader_workload import SplitDatasets
from workloads.data.torchvision_files import CIFAR10, local_copy
from workloads.models.resnet import resnet18


class TensorImages(Dataset[ImageExample]):
    """In-memory uint8 images with a per-example transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: nn.Module | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> ImageExample:
        image = self.images[i]
        return (self.transform(image) if self.transform else image), int(self.labels[i])


class Cifar10ResNet18(ImageClassifierWorkload):
    mean = (125.307, 122.961, 113.8575)
    std = (51.5865, 50.847, 51.255)

    def __init__(self, *, validation_size: int = 5000, width: int = 64, download: bool = False, **common):
        self.validation_size, self.width, self.download = whole_number("validation_size", validation_size), whole_number("width", width), flag("download", download)
        super().__init__(**common)

    def check_data(self) -> None:
        # CIFAR-10 is small (180 MB): read it now, so that a broken file fails before any work.
        folder = local_copy(self.name, CIFAR10, self.data_dir, self.download)
        self._train_arrays, self._test_arrays = CIFAR10.read(self.name, folder)
        if len(self._train_arrays[1]) <= self.validation_size:
            raise PacerUserError(f"workload {self.name}: validation_size={self.validation_size} leaves no training images (have {len(self._train_arrays[1])})")

    def make_datasets(self) -> SplitDatasets:
        (images, labels), (test_images, test_labels) = self._train_arrays, self._test_arrays
        n_train = len(labels) - self.validation_size
        augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
        return SplitDatasets(
            train=TensorImages(images[:n_train], labels[:n_train], augment),
            eval_train=Subset(TensorImages(images, labels), range(min(self.eval_train_size, n_train))),
            validation=TensorImages(images[n_train:], labels[n_train:]),
            test=TensorImages(test_images, test_labels),
        )

    def build_model(self) -> nn.Module:
        return resnet18(num_classes=10, width=self.width, cifar_stem=True)
