"""torchvision's image datasets from their files on disk: where they live, when they are
downloaded, how they are read, and the in-memory workload base that uses them.

Layouts under a data folder `data_dir` (torchvision's `root`, so a copy that torchvision
downloaded elsewhere can be pointed to as it is):

* MNIST: `data_dir/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each file raw
  or gzipped (`.gz`);
* Fashion-MNIST: the same names under `data_dir/FashionMNIST/raw/`;
* CIFAR-10: `data_dir/cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch}` (the
  python pickles).

Download (`local_copy`): when the dataset's folder holds none of its files and `download` is
true, torchvision's own dataset class fetches and checksums them into `data_dir` (which must
then be writable). When it holds all of them they are read as they are: no network, and the
folder may be read-only. A folder with some but not all of the files is an error naming the
missing ones, never a silent download. With `download` false a missing copy is an error
naming the folder and the setting that enables the download.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from harness.core.checks import check_choice, flag, whole_number
from harness.core.errors import PacerUserError
from harness.core.spec import MetricDirection
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload, check_writable
from workloads.mnist1d_mlp import ACTIVATIONS

Arrays = tuple[torch.Tensor, torch.Tensor]
"""uint8 images (N, C, H, W) and int64 labels (N,)."""
NUM_CLASSES = 10


@dataclass(frozen=True)
class TorchvisionFiles:
    """One torchvision dataset on disk."""

    title: str
    torchvision_class: str
    """The class in `torchvision.datasets` that downloads it."""
    folder: str
    """Where its files are, relative to `data_dir`."""
    files: tuple[str, ...]
    read: Callable[[str, Path], tuple[Arrays, Arrays]]
    """(workload name, folder) -> (official train set, official test set)."""
    mean: tuple[float, ...]
    """Per-channel pixel mean and standard deviation, in 0..255 units."""
    std: tuple[float, ...]
    gzip_ok: bool = False

    def layout(self) -> str:
        return f"data_dir/{self.folder}/{{{','.join(self.files)}}}" + ("[.gz]" if self.gzip_ok else "")

    def present(self, folder: Path, name: str) -> bool:
        return (folder / name).is_file() or (self.gzip_ok and (folder / f"{name}.gz").is_file())


def local_copy(workload: str, files: TorchvisionFiles, data_dir: Path, download: bool) -> Path:
    """The folder holding every file of `files`, downloaded first where it holds none of them
    and `download` is true; `PacerUserError` naming what is missing otherwise."""
    folder = data_dir / files.folder
    missing = [name for name in files.files if not files.present(folder, name)]
    if len(missing) == len(files.files):
        if not download:
            raise PacerUserError(
                f"workload {workload}: {folder} lacks {', '.join(missing)}: no local copy of {files.title}; set workload.download=true to let "
                f"torchvision download it into {data_dir} (needs internet), or copy the files there; expected {files.layout()}")
        fetch(workload, files, data_dir)
        missing = [name for name in files.files if not files.present(folder, name)]
    if missing:
        raise PacerUserError(
            f"workload {workload}: {folder} lacks {', '.join(missing)}: an incomplete copy of {files.title} (a download only fills an empty "
            f"folder: copy the missing files there, or empty the folder to download again); expected {files.layout()}")
    return folder


def fetch(workload: str, files: TorchvisionFiles, data_dir: Path) -> None:
    """Download train and test files through torchvision's dataset class."""
    try:
        check_writable(data_dir)
    except ValueError as e:
        raise PacerUserError(f"workload {workload}: {e}, so {files.title} cannot be downloaded into it") from None
    import torchvision.datasets  # only a download needs it

    dataset_class = getattr(torchvision.datasets, files.torchvision_class)
    try:
        for train in (True, False):
            dataset_class(str(data_dir), train=train, download=True)
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
        detail = (str(e).strip().splitlines() or [""])[0]
        raise PacerUserError(
            f"workload {workload}: downloading {files.title} into {data_dir} failed ({type(e).__name__}: {detail}); check the network, or copy "
            f"the files there ({files.layout()})") from None


# --- MNIST and Fashion-MNIST: idx files ------------------------------------------------


def read_idx(workload: str, folder: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """An idx file of unsigned bytes (raw or `.gz`) whose shape is (N, *shape)."""
    path = folder / name if (folder / name).is_file() else folder / f"{name}.gz"
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise PacerUserError(f"workload {workload}: cannot read {path} ({type(e).__name__}: {e})") from None
    ndim = 1 + len(shape)
    header = 4 + 4 * ndim  # two zero bytes, the type code (8: unsigned byte), ndim, then each dimension as a big-endian uint32
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4")) if len(data) >= header else ()
    if data[:4] != bytes([0, 0, 8, ndim]) or len(dims) != ndim or dims[1:] != shape or len(data) != header + int(np.prod(dims)):
        expected = ", ".join(("N", *map(str, shape)))
        raise PacerUserError(f"workload {workload}: {path} is not an idx file of unsigned bytes shaped ({expected}) (truncated or corrupt?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(workload: str, folder: Path, prefix: str) -> Arrays:
    """Images (N, 1, 28, 28) and labels of `<prefix>-images-idx3-ubyte` / `-labels-idx1-ubyte`."""
    images = read_idx(workload, folder, f"{prefix}-images-idx3-ubyte", (28, 28))
    labels = read_idx(workload, folder, f"{prefix}-labels-idx1-ubyte", ())
    if len(images) != len(labels):
        raise PacerUserError(f"workload {workload}: {folder} has {len(images)} {prefix} images but {len(labels)} {prefix} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), checked_labels(workload, folder / f"{prefix}-labels-idx1-ubyte", labels)


def read_mnist(workload: str, folder: Path) -> tuple[Arrays, Arrays]:
    return read_idx_pair(workload, folder, "train"), read_idx_pair(workload, folder, "t10k")


def checked_labels(workload: str, path: Path, labels: np.ndarray | list[int]) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if len(tensor) and not 0 <= int(tensor.min()) <= int(tensor.max()) < NUM_CLASSES:
        raise PacerUserError(f"workload {workload}: {path} has labels outside 0..{NUM_CLASSES - 1}")
    return tensor


MNIST_NAMES = tuple(f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1"))
MNIST = TorchvisionFiles("MNIST", "MNIST", "MNIST/raw", MNIST_NAMES, read_mnist, mean=(33.32,), std=(78.57,), gzip_ok=True)
FASHION_MNIST = TorchvisionFiles("Fashion-MNIST", "FashionMNIST", "FashionMNIST/raw", MNIST_NAMES, read_mnist, mean=(72.94,), std=(90.02,), gzip_ok=True)


# --- CIFAR-10: python pickles ------------------------------------------------------------

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"


def read_cifar_batches(workload: str, folder: Path, names: tuple[str, ...], layout: str) -> Arrays:
    """uint8 images (N, 3, 32, 32) and int64 labels from CIFAR pickle batches."""
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(checked_labels(workload, folder / name, entry["labels"]))
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
            raise PacerUserError(f"workload {workload}: cannot read {folder / name} ({type(e).__name__}: {e}); expected {layout}") from None
        if len(images[-1]) != len(labels[-1]):
            raise PacerUserError(f"workload {workload}: {folder / name} has {len(images[-1])} images but {len(labels[-1])} labels")
    return torch.from_numpy(np.concatenate(images)), torch.cat(labels)


def read_cifar10(workload: str, folder: Path) -> tuple[Arrays, Arrays]:
    layout = CIFAR10.layout()
    return read_cifar_batches(workload, folder, CIFAR10_TRAIN_FILES, layout), read_cifar_batches(workload, folder, (CIFAR10_TEST_FILE,), layout)


CIFAR10 = TorchvisionFiles("CIFAR-10", "CIFAR10", "cifar-10-batches-py", (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE), read_cifar10,
                           mean=(125.307, 122.961, 113.8575), std=(51.5865, 50.847, 51.255))


# --- the workload base -------------------------------------------------------------------


def carve_splits(train: Arrays, test: Arrays, dataset_seed: int, validation_size: int, eval_train_size: int) -> Splits:
    """The official train set shuffled by `dataset_seed`: its last `validation_size` images
    are the validation split, the rest the training split; the official test set is the test split."""
    images, labels = train
    order = torch.from_numpy(np.random.default_rng(dataset_seed).permutation(len(labels)))
    images, labels = images[order], labels[order]
    n_train = len(labels) - validation_size
    return Splits(
        train=Split(images[:n_train], labels[:n_train]),
        validation=Split(images[n_train:], labels[n_train:]),
        test=Split(*test),
        eval_train_size=min(eval_train_size, n_train),
    )


class Standardize(nn.Module):
    """uint8 images -> float (x - mean) / std per channel: the data stays uint8 on the device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std


class TorchvisionImages(TensorWorkload):
    """Classification on a torchvision dataset read from `data_dir` (see the module docstring)
    at construction, so that a missing or broken file fails before any work."""

    files: ClassVar[TorchvisionFiles]
    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE
    cache_splits = False  # reading the files is as fast as reading a cache of them

    def __init__(self, *, validation_size: int = 5000, eval_train_size: int = 5000, download: bool = False, activation: str = "relu", **common):
        self.validation_size, self.eval_train_size = whole_number("validation_size", validation_size), whole_number("eval_train_size", eval_train_size)
        self.download, self.activation = flag("download", download), check_choice("activation", activation, ACTIVATIONS)
        super().__init__(**common)
        self.check_targets()  # before the data is read
        folder = local_copy(self.name, self.files, self.data_dir, self.download)
        self._train_arrays, self._test_arrays = self.files.read(self.name, folder)
        if self.validation_size >= len(self._train_arrays[1]):
            raise ValueError(f"validation_size={validation_size} must leave training images (the training set has {len(self._train_arrays[1])})")

    def make_splits(self, dataset_seed: int) -> Splits:
        return carve_splits(self._train_arrays, self._test_arrays, dataset_seed, self.validation_size, self.eval_train_size)

    def standardize(self) -> nn.Module:
        """The model's first layer."""
        return Standardize(self.files.mean, self.files.std)
