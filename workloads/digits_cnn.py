"""scikit-learn's 8x8 handwritten digits classified by a small CNN with BatchNorm.

The 1,797 digits ship inside the scikit-learn wheel (`sklearn.datasets.load_digits`): no
download. The dataset seed fixes the split: 500 for training, the rest halved into validation
and test (648 each, so that accuracy is not stuck at a few coarse steps near 100%). BatchNorm
makes train and eval modes differ and exercises `update_batch_norm`; the small training set
makes regularization (weight decay, dropout, label smoothing) matter.
Targets, budget and step hint are in configs/workload/digits_cnn.yaml.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from harness.core.checks import check_choice, finite_number, whole_number
from harness.core.spec import MetricDirection
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload
from workloads.mnist1d_mlp import ACTIVATIONS

NUM_DIGITS = 1797

def digits_splits(dataset_seed: int, num_train: int) -> Splits:
    """The digits in [0, 1] as (N, 1, 8, 8), shuffled by the dataset seed; `num_train` for
    training, the rest halved into validation and test."""
    digits = load_digits()
    order = np.random.default_rng(dataset_seed).permutation(len(digits.images))
    x = torch.tensor(digits.images[order] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target[order], dtype=torch.long)
    holdout = (len(x) - num_train) // 2
    end = num_train + holdout
    return Splits(
        train=Split(x[:num_train], y[:num_train]),
        validation=Split(x[num_train:end], y[num_train:end]),
        test=Split(x[end:end + holdout], y[end:end + holdout]),
        eval_train_size=min(num_train, holdout),
    )


class DigitsCnn(TensorWorkload):
    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE

    def __init__(self, *, num_train: int = 500, channels: int = 32, activation: str = "relu", bn_scale_init: float = 1.0, **common):
        self.num_train, self.channels = whole_number("num_train", num_train), whole_number("channels", channels)
        if self.num_train >= NUM_DIGITS - 2:
            raise ValueError(f"num_train={num_train} must leave validation and test examples (the data set has {NUM_DIGITS})")
        self.activation, self.bn_scale_init = check_choice("activation", activation, ACTIVATIONS), finite_number("bn_scale_init", bn_scale_init)
        super().__init__(**common)

    def data_settings(self) -> dict[str, object]:
        return {"num_train": self.num_train}

    def make_splits(self, dataset_seed: int) -> Splits:
        return digits_splits(dataset_seed, self.num_train)

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


