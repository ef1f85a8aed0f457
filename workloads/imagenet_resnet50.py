"""ImageNet classified by ResNet-50: AlgoPerf's `imagenet_resnet` workload.

Data: ImageNet-1k in torchvision's `ImageFolder` layout (see `LAYOUT`); the test split is
ImageNet-v2 (matched frequency), as in AlgoPerf. Preprocessing is AlgoPerf's: training
images get a random resized crop to 224 (scale 0.08-1, aspect 3/4-4/3) and a horizontal
flip; evaluation images are resized to 256 and center-cropped to 224; both are normalised
by the ImageNet mean and standard deviation. Targets, budget, eval period and step hint
(AlgoPerf's) are in configs/workload/imagenet_resnet50.yaml, with the variants (SiLU, GELU,
large BatchNorm init) and their targets.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn
from torch.utils.data import Subset
from torchvision import transforms
from torchvision.datasets import ImageFolder

from harness.core.checks import check_choice, finite_number, whole_number
from harness.core.errors import PacerUserError
from harness.plugins.image_workload import ImageClassifierWorkload
from harness.plugins.loader_workload import SplitDatasets, fixed_subset
from workloads.models.resnet import ACTIVATIONS, resnet50

LAYOUT = ("data_dir/train/<wnid>/<image>.JPEG and data_dir/val/<wnid>/<image>.JPEG (torchvision ImageFolder), "
          "data_dir/imagenet_v2/<class index 0-999>/<image>.jpeg (ImageNet-v2 matched-frequency)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ImageNetV2Folder(ImageFolder):
    """ImageNet-v2 as distributed: class folders named by their ImageNet class index."""

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted((d.name for d in Path(directory).iterdir() if d.is_dir()), key=int)
        return classes, {c: int(c) for c in classes}


def check_image_folder(workload: str, data_dir: Path, split: str, numeric: bool = False) -> list[str]:
    """Class folder names of `data_dir/split`; `PacerUserError` naming the layout if malformed."""
    root = data_dir / split
    problem = None
    if not data_dir.is_dir():
        problem = f"data_dir {data_dir} does not exist"
    elif not root.is_dir():
        problem = f"missing {root}"
    else:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        if not classes:
            problem = f"{root} has no class folders"
        elif numeric and not all(c.isdigit() for c in classes):
            problem = f"{root} has class folders not named by a class index"
        elif not any(f.suffix.lower() in IMAGE_SUFFIXES for f in (root / classes[0]).iterdir()):
            problem = f"{root / classes[0]} holds no images"
    if problem:
        raise PacerUserError(f"workload {workload}: {problem}; expected {LAYOUT}")
    return classes


def train_transform(image_size: int, randaugment: bool) -> transforms.Compose:
    steps: list[nn.Module] = [
        transforms.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(0.75, 4.0 / 3.0)),
        transforms.RandomHorizontalFlip(),
    ]
    if randaugment:
        steps.append(transforms.RandAugment(num_ops=2, magnitude=10))
    return transforms.Compose([*steps, transforms.PILToTensor()])


def eval_transform(image_size: int, resize_size: int) -> transforms.Compose:
    return transforms.Compose([transforms.Resize(resize_size), transforms.CenterCrop(image_size), transforms.PILToTensor()])


class ImagenetWorkload(ImageClassifierWorkload):
    """ImageNet data and preprocessing, shared with `imagenet_vit`."""

    mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    std = (0.229 * 255, 0.224 * 255, 0.225 * 255)
    randaugment = False

    def __init__(self, *, num_classes: int = 1000, image_size: int = 224, resize_size: int = 256, **common):
        self.num_classes, self.image_size = whole_number("num_classes", num_classes), whole_number("image_size", image_size)
        self.resize_size = whole_number("resize_size", resize_size)
        super().__init__(**common)

    def check_data(self) -> None:
        train = check_image_folder(self.name, self.data_dir, "train")
        val = check_image_folder(self.name, self.data_dir, "val")
        if train != val:
            raise PacerUserError(f"workload {self.name}: {self.data_dir / 'train'} and {self.data_dir / 'val'} have different class folders; expected {LAYOUT}")
        test = check_image_folder(self.name, self.data_dir, "imagenet_v2", numeric=True)
        largest = max(len(train) - 1, *map(int, test))
        if largest >= self.num_classes:  # a label past the head: an index error (a device-side assert on CUDA) at the first step
            raise PacerUserError(f"workload {self.name}: num_classes={self.num_classes} is too few for {self.data_dir}, whose classes go up to index {largest}; expected {LAYOUT}")

    def make_datasets(self) -> SplitDatasets:
        evaluate = eval_transform(self.image_size, self.resize_size)
        train = ImageFolder(str(self.data_dir / "train"), transform=train_transform(self.image_size, self.randaugment))
        train_for_eval = copy.copy(train)  # the same file list (scanned once), another transform
        train_for_eval.transform = evaluate
        return SplitDatasets(
            train=train,
            eval_train=Subset(train_for_eval, fixed_subset(len(train_for_eval), self.eval_train_size, self.dataset_seed)),
            validation=ImageFolder(str(self.data_dir / "val"), transform=evaluate),
            test=ImageNetV2Folder(str(self.data_dir / "imagenet_v2"), transform=evaluate),
        )


class ImagenetResNet50(ImagenetWorkload):
    def __init__(self, *, activation: str = "relu", bn_init_scale: float = 0.0, width: int = 64, **common):
        self.activation, self.bn_init_scale = check_choice("activation", activation, ACTIVATIONS), finite_number("bn_init_scale", bn_init_scale)
        self.width = whole_number("width", width)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        return resnet50(num_classes=self.num_classes, width=self.width, activation=self.activation, bn_init_scale=self.bn_init_scale)
