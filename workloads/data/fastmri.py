"""The fastMRI single-coil knee volumes (`.h5`) as AlgoPerf lays them out, and AlgoPerf's
preprocessing of a slice (algoperf/workloads/fastmri/input_pipeline.py), read with h5py and
computed in torch.

A volume file holds `kspace` (complex64 (S, 640, W), W ~ 368) and `reconstruction_esc`
(float32 (S, 320, 320), the target images) and the attribute `max` (the volume's largest
target value, SSIM's data range). A slice's model input is the magnitude of the inverse
Fourier transform of its k-space under a 4x undersampling mask, cropped to the target's size
and normalized by its own mean and std; the target is normalized by the same mean and std.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path

import h5py
import torch
from torch.utils.data import Dataset

from harness.core import rng as rnglib

TRAIN_DIR, VAL_DIR = "knee_singlecoil_train", "knee_singlecoil_val"
VALIDATION_VOLUMES = 100
"""AlgoPerf's validation split: the first 100 of the sorted `knee_singlecoil_val` files; its
test split is the rest (99 volumes)."""
LAYOUT = (f"AlgoPerf's layout (datasets/dataset_setup.py --fastmri): DATA_DIR/{TRAIN_DIR}/*.h5 and DATA_DIR/{VAL_DIR}/*.h5 "
          "(or fastMRI's own names singlecoil_train and singlecoil_val), each file holding kspace (S, 640, W) complex64, "
          "reconstruction_esc (S, 320, 320) float32 and the attribute max")
CENTER_FRACTION, ACCELERATION = 0.08, 4
CLIP = 6.0
"""Normalized images are clipped to [-6, 6] (AlgoPerf's `clip_image`)."""
EVAL_MASK_SEED = 0
"""Validation and test slices all use the mask drawn from one fixed seed (AlgoPerf's `_EVAL_SEED`)."""

Slice = tuple[torch.Tensor, torch.Tensor, float, float, float]
"""(inputs (H, W) float32, targets (H, W) float32, mean, std, volume_max)."""


def split_files(data_dir: Path, validation_volumes: int = VALIDATION_VOLUMES) -> dict[str, list[Path]]:
    """The volume files of AlgoPerf's splits: `train` (every training volume), `validation`
    (the first `validation_volumes` sorted validation volumes) and `test` (the rest). The
    directories are `knee_singlecoil_{train,val}`, or `singlecoil_{train,val}` if those are
    absent.

    Raises:
        ValueError: a directory is missing, holds no `.h5` file, or the validation
            directory has no volume left for the test split; the message names the problem.
    """
    files = {}
    for name in (TRAIN_DIR, VAL_DIR):
        folder = data_dir / name
        if not folder.is_dir() and (data_dir / name.removeprefix("knee_")).is_dir():
            folder = data_dir / name.removeprefix("knee_")  # the tarballs' names, before dataset_setup.py renames them
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a directory")
        files[name] = sorted(folder.glob("*.h5"))
        if not files[name]:
            raise ValueError(f"{folder} holds no .h5 file")
    val = files[VAL_DIR]
    if len(val) <= validation_volumes:
        raise ValueError(f"{val[0].parent} holds {len(val)} volumes: none left for the test split after the first {validation_volumes} (validation)")
    return {"train": files[TRAIN_DIR], "validation": val[:validation_volumes], "test": val[validation_volumes:]}


def check_volume(path: Path) -> int:
    """The number of slices of a volume file, after checking its datasets' shapes and types.

    Raises:
        ValueError: the file is not HDF5, or `kspace` / `reconstruction_esc` is missing, not
            complex / real 3-D, or they disagree on the number of slices.
    """
    try:
        with h5py.File(path, "r") as f:
            kspace, target = f.get("kspace"), f.get("reconstruction_esc")
            if kspace is None or target is None:
                raise ValueError(f"{path} lacks {'kspace' if kspace is None else 'reconstruction_esc'}")
            if kspace.ndim != 3 or kspace.dtype.kind != "c" or target.ndim != 3 or target.dtype.kind != "f":
                raise ValueError(f"{path} holds kspace {kspace.dtype} {kspace.shape} and reconstruction_esc "
                                 f"{target.dtype} {target.shape}, not complex (S, 640, W) and float (S, 320, 320)")
            if kspace.shape[0] != target.shape[0] or any(k < t for k, t in zip(kspace.shape[1:], target.shape[1:], strict=True)):
                raise ValueError(f"{path}: kspace {kspace.shape} and reconstruction_esc {target.shape} disagree")
            return int(kspace.shape[0])
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 file ({e})") from None


def undersampling_mask(num_cols: int, generator: torch.Generator) -> torch.Tensor:
    """AlgoPerf's random 4x column mask, (num_cols,) float32 of 0/1: the central
    int(0.08 * num_cols) columns, plus each column with the probability that makes a quarter
    of all columns sampled on average."""
    num_low = int(num_cols * CENTER_FRACTION)
    mask = torch.zeros(num_cols)
    pad = (num_cols - num_low + 1) // 2
    mask[pad:pad + num_low] = 1.0
    prob = (num_cols / ACCELERATION - num_low) / (num_cols - num_low)
    return torch.maximum(mask, (torch.rand(num_cols, generator=generator) < prob).float())


def process_slice(kspace: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """AlgoPerf's `_process_example`: complex (640, W) k-space, (h, w) target and (W,) column
    mask -> (inputs (h, w), targets (h, w), mean, std), float32.

    The input is |centered orthonormal inverse 2-D FFT of the masked k-space| cropped to the
    target's size at the center; mean and std (population) are the input's; both images are
    normalized by them and clipped to [-6, 6].
    """
    image = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace * mask, dim=(0, 1)), norm="ortho"), dim=(0, 1))
    top, left = (image.shape[0] - target.shape[0]) // 2, (image.shape[1] - target.shape[1]) // 2
    image = image[top:top + target.shape[0], left:left + target.shape[1]].abs()
    mean, std = image.mean(), image.std(correction=0)
    inputs = ((image - mean) / std).clamp(-CLIP, CLIP)
    targets = ((target - mean) / std).clamp(-CLIP, CLIP)
    return inputs, targets, float(mean), float(std)


class FastMRISlices(Dataset[Slice]):
    """Every slice of `files`, volume after volume, preprocessed as AlgoPerf's input pipeline.

    Slice i's mask is drawn from a generator seeded by `fold_in(mask_seed, i)` (a fixed mask
    per training slice, as AlgoPerf's per-example seed), or, with `per_slice_masks` False,
    from `mask_seed` alone for every slice (AlgoPerf's fixed evaluation randomness).
    Files are opened per read, so the dataset can be sent to DataLoader workers.
    """

    def __init__(self, files: Sequence[Path], mask_seed: int, per_slice_masks: bool):
        self.files, self.mask_seed, self.per_slice_masks = list(files), mask_seed, per_slice_masks
        self.starts = [0]
        for path in self.files:
            self.starts.append(self.starts[-1] + check_volume(path))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> Slice:
        if not 0 <= index < len(self):
            raise IndexError(f"slice {index} of {len(self)}")
        volume = bisect.bisect_right(self.starts, index) - 1
        with h5py.File(self.files[volume], "r") as f:
            kspace = torch.from_numpy(f["kspace"][index - self.starts[volume]]).to(torch.complex64)
            target = torch.from_numpy(f["reconstruction_esc"][index - self.starts[volume]]).float()
            volume_max = float(f.attrs.get("max", 0.0))
        seed = rnglib.fold_in(self.mask_seed, index) if self.per_slice_masks else self.mask_seed
        mask = undersampling_mask(kspace.shape[1], rnglib.generator(seed))
        inputs, targets, mean, std = process_slice(kspace, target, mask)
        return inputs, targets, mean, std, volume_max

