"""Tiny fastMRI single-coil knee volumes in the real `.h5` format and AlgoPerf's layout, for tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

KSPACE_SHAPE, TARGET_SHAPE = (32, 24), (16, 16)
"""Per slice: k-space rows x columns (the real ones are 640 x ~368) and the target image (320 x 320)."""
VOLUMES = {"knee_singlecoil_train": [3, 2], "knee_singlecoil_val": [3, 2, 2]}
"""Slices per volume; with validation_volumes=1 the validation split is 3 slices and the test split 4."""
SIZES = {"train": 5, "validation": 3, "test": 4}


def write_volume(path: Path, slices: int, rng: np.random.Generator, volume_max: float | None = None) -> None:
    """A volume as fastMRI stores it: `kspace` complex64 (S, rows, cols), the centered
    orthonormal 2-D FFT of smooth positive images; `reconstruction_esc` float32 (S, h, w), the
    center crop of their magnitudes; attribute `max` (the targets' maximum unless given)."""
    y, x = np.mgrid[:KSPACE_SHAPE[0], :KSPACE_SHAPE[1]]
    images = []
    for _ in range(slices):
        cy, cx = rng.uniform(8, KSPACE_SHAPE[0] - 8), rng.uniform(6, KSPACE_SHAPE[1] - 6)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / rng.uniform(10, 40))
        images.append(1e-4 * (blob + 0.1 * rng.random(KSPACE_SHAPE)))
    images = np.stack(images)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(1, 2)), norm="ortho"), axes=(1, 2)).astype(np.complex64)
    top, left = (KSPACE_SHAPE[0] - TARGET_SHAPE[0]) // 2, (KSPACE_SHAPE[1] - TARGET_SHAPE[1]) // 2
    targets = np.abs(images[:, top:top + TARGET_SHAPE[0], left:left + TARGET_SHAPE[1]]).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=targets)
        f.attrs["max"] = float(targets.max()) if volume_max is None else volume_max
        f.attrs["acquisition"] = "CORPD_FBK"


def make_fastmri(root: Path, seed: int = 0) -> Path:
    """`root/knee_singlecoil_{train,val}/file<i>.h5` with `VOLUMES` slices; returns root."""
    rng = np.random.default_rng(seed)
    for folder, volumes in VOLUMES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, slices in enumerate(volumes):
            write_volume(root / folder / f"file{1000000 + i}.h5", slices, rng)
    return root
