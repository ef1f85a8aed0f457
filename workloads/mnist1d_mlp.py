"""MNIST-1D classified by an MLP.

MNIST-1D (Greydanus, "Scaling down deep learning", 2020) is generated procedurally by the
`mnist1d` package's `make_dataset` from a seed: no download. Each example is a 40-sample
1-D signal of one of ten digit templates, padded, scaled, sheared, shifted and noised.
Targets, budget and step hint are in configs/workload/mnist1d_mlp.yaml.
"""

from __future__ import annotations

import numpy as np
import torch
from mnist1d.data import get_dataset_args, make_dataset
from torch import nn

from harness.core.checks import check_choice, whole_number
from harness.core.spec import MetricDirection
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
MIN_SAMPLES = 10
"""`make_dataset` draws `num_samples // 10` of each digit: fewer than ten is no data at all."""


def mnist1d_splits(dataset_seed: int, num_samples: int, eval_train_size: int, holdout_fraction: float = 0.2) -> Splits:
    """Train / validation / test tensors; validation and test each take `holdout_fraction`."""
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, dataset_seed, 1.0
    state = np.random.get_state()  # make_dataset reseeds numpy's global RNG
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    x = torch.tensor(np.concatenate([data["x"], data["x_test"]]), dtype=torch.float32)
    y = torch.tensor(np.concatenate([data["y"], data["y_test"]]), dtype=torch.long)
    n_holdout = int(len(x) * holdout_fraction)
    n_train = len(x) - 2 * n_holdout
    return Splits(
        train=Split(x[:n_train], y[:n_train]),
        validation=Split(x[n_train:n_train + n_holdout], y[n_train:n_train + n_holdout]),
        test=Split(x[n_train + n_holdout:], y[n_train + n_holdout:]),
        eval_train_size=min(eval_train_size, n_train),
    )


class Mnist1dWorkload(TensorWorkload):
    """The MNIST-1D data shared by the MLP and the CNN (one cache file for both)."""

    target_metric_name = "accuracy"
    target_metric_direction = MetricDirection.MAXIMIZE
    data_name = "mnist1d"

    def __init__(self, *, num_samples: int = 10000, eval_train_size: int = 2000, activation: str = "relu", **common):
        self.num_samples, self.eval_train_size = whole_number("num_samples", num_samples, minimum=MIN_SAMPLES), whole_number("eval_train_size", eval_train_size)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        super().__init__(**common)

    def data_settings(self) -> dict[str, object]:
        return {"num_samples": self.num_samples, "eval_train_size": self.eval_train_size}

    def make_splits(self, dataset_seed: int) -> Splits:
        return mnist1d_splits(dataset_seed, self.num_samples, self.eval_train_size)


class Mnist1dMlp(Mnist1dWorkload):
    def __init__(self, *, hidden: int = 256, depth: int = 2, **common):
        self.hidden, self.depth = whole_number("hidden", hidden), whole_number("depth", depth)
        super().__init__(**common)

    def build_model(self) -> nn.Module:
        layers: list[nn.Module] = []
        width = 40
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), ACTIVATIONS[self.activation](), nn.Dropout(0.0)]
            width = self.hidden
        return nn.Sequential(*layers, nn.Linear(width, 10))
