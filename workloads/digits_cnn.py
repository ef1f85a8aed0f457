"""scikit-learn's 8x8 handwritten digits, enlarged by random distortions, classified by a small
CNN with BatchNorm.

The 1,797 digits ship inside the scikit-learn wheel (`sklearn.datasets.load_digits`): no
download. They are too few for a validation set that times a target well (648 held-out digits
move accuracy in steps of 0.15%), so each split is generated: the dataset seed shuffles the
originals into disjoint pools (`num_train` for training, the rest halved into validation and
test), and every example of a split is a random affine distortion (rotation, scale, shift) of
an original from that split's pool, `split_size` examples per split. All three splits follow
one distribution and no original appears in two pools; the validation metric moves in steps of
1/`split_size`, though its examples are variants of only ~650 digits (docs/cpu-suite.md).
BatchNorm makes train and eval modes differ and exercises `update_batch_norm`; the few
underlying training digits make regularization (weight decay, dropout, label smoothing) matter.
Targets, budget and step hint are in configs/workload/digits_cnn.yaml.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from sklearn.datasets import load_digits
from torch import nn

from harness.spec import MetricDirection
from harness.tensor_workload import Split, Splits, TensorWorkload
from workloads.mnist1d_mlp import ACTIVATIONS, check_choice

NUM_DIGITS = 1797

MAX_ROTATION_DEG, SCALE_RANGE, MAX_SHIFT_PX = 10.0, (0.92, 1.08), 0.5


def digits_splits(dataset_seed: int, num_train: int, split_size: int, eval_train_size: int) -> Splits:
    """Train / validation / test of `split_size` distorted digits each, as (N, 1, 8, 8) in [0, 1].

    The originals are shuffled by the dataset seed into pools: the first `num_train` for
    training, the rest halved into validation and test; each split cycles through its pool in
    a seeded order, distorting every copy afresh (`distort`)."""
    digits = load_digits()
    rng = np.random.default_rng([dataset_seed, 0x6469676974])
    order = rng.permutation(len(digits.images))
    holdout = (len(order) - num_train) // 2
    pools = (order[:num_train], order[num_train:num_train + holdout], order[num_train + holdout:])

    def draw(pool: np.ndarray) -> Split:
        picks = np.resize(rng.permutation(pool), split_size)
        images = np.stack([distort(digits.images[i] / 16.0, rng) for i in picks])
        return Split(torch.tensor(images, dtype=torch.float32).unsqueeze(1), torch.tensor(digits.target[picks], dtype=torch.long))

    train, validation, test = (draw(pool) for pool in pools)
    return Splits(train, validation, test, eval_train_size=min(eval_train_size, split_size))


def distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rotation (up to MAX_ROTATION_DEG), scale (SCALE_RANGE) and shift (up to
    MAX_SHIFT_PX per axis) of one 8x8 image about its centre, bilinear, zero outside."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    scale = rng.uniform(*SCALE_RANGE)
    shift = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, size=2)
    # affine_transform maps output coordinates to input ones: the inverse of the distortion
    inverse = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) / scale
    centre = (np.array(image.shape) - 1) / 2
    offset = centre - inverse @ (centre + shift)
    return np.clip(ndimage.affine_transform(image, inverse, offset=offset, order=1, mode="constant"), 0.0, 1.0)


class DigitsCnn(TensorWorkload):
    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE

    data_version = "2"  # 2: distorted splits of `split_size` examples

    def __init__(
        self, *, num_train: int = 500, split_size: int = 5000, eval_train_size: int = 2000, channels: int = 32,
        activation: str = "relu", bn_scale_init: float = 1.0, **common,
    ):
        super().__init__(**common)
        check_choice("activation", activation, ACTIVATIONS)
        if not 0 < num_train < NUM_DIGITS - 2:
            raise ValueError(f"num_train {num_train} must leave validation and test examples (the data set has {NUM_DIGITS})")
        if split_size < 1 or eval_train_size < 1:
            raise ValueError(f"split_size {split_size} and eval_train_size {eval_train_size} must be >= 1")
        self.num_train, self.split_size, self.eval_train_size = num_train, split_size, eval_train_size
        self.channels, self.activation, self.bn_scale_init = channels, activation, bn_scale_init

    def data_settings(self) -> dict[str, object]:
        return {"num_train": self.num_train, "split_size": self.split_size, "eval_train_size": self.eval_train_size}

    def make_splits(self, dataset_seed: int) -> Splits:
        return digits_splits(dataset_seed, self.num_train, self.split_size, self.eval_train_size)

    def build_model(self) -> nn.Module:
        c = self.channels
        model = nn.Sequential(
            self._conv_block(1, c), self._conv_block(c, c), nn.MaxPool2d(2),  # (B, c, 4, 4)
            self._conv_block(c, 2 * c), self._conv_block(2 * c, 2 * c), nn.MaxPool2d(2),  # (B, 2c, 2, 2)
            nn.Flatten(), nn.Dropout(0.0), nn.Linear(8 * c, 10))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, self.bn_scale_init)
        return model

    def _conv_block(self, c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), ACTIVATIONS[self.activation]())


