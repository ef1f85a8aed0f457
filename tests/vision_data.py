"""Tiny vision datasets in their real on-disk formats, generated for tests (no download)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(root: Path, classes: list[str], per_class: int, rng: np.random.Generator, size: tuple[int, int] = (48, 40)) -> None:
    """`root/<class>/<i>.JPEG`: noisy images whose mean colour depends on the class."""
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([60 + 70 * (label % 3), 60 + 50 * (label % 2), 200 - 60 * (label % 3)])
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.JPEG", quality=85)


def make_imagenet(root: Path, n_classes: int = 3, train_per_class: int = 6, val_per_class: int = 3, v2_per_class: int = 2) -> Path:
    """An ImageNet tree: train/ and val/ by WordNet id, imagenet_v2/ by class index."""
    rng = np.random.default_rng(0)
    wnids = [f"n{1440764 + i:08d}" for i in range(n_classes)]
    write_image_folder(root / "train", wnids, train_per_class, rng)
    write_image_folder(root / "val", wnids, val_per_class, rng)
    write_image_folder(root / "imagenet_v2", [str(i) for i in range(n_classes)], v2_per_class, rng)
    return root


def make_cifar10(root: Path, per_batch: int = 8, n_test: int = 10) -> Path:
    """`root/cifar-10-batches-py/` with five training batches and a test batch (pickles)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        entry = {"batch_label": name, "labels": rng.integers(0, 10, n).tolist(),
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "filenames": [f"{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return root


def write_idx(path: Path, array: np.ndarray, compressed: bool) -> None:
    """An idx file of unsigned bytes (the MNIST format), gzipped as `<path>.gz` if `compressed`."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compressed:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_mnist(root: Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 12, compressed: bool = True, seed: int = 0) -> Path:
    """`root/<folder>/raw/` with torchvision's four MNIST idx files (28x28 images whose
    brightness depends on the label); `folder` is `FashionMNIST` for Fashion-MNIST."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.clip(20 * labels[:, None, None] + rng.normal(40, 30, (n, 28, 28)), 0, 255).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compressed)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compressed)
    return root
