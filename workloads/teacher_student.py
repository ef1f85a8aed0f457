"""Ill-conditioned teacher-student regression: an MLP student fits a random tanh teacher.

Inputs are Gaussian with covariance Q diag(s^2) Q^T, where the scales s span a factor of
sqrt(`condition`) and Q is a random rotation, so the ill-conditioning is not aligned with the
coordinate axes (diagonal preconditioners do not undo it). The teacher whitens its input, so
every direction matters to the target, however small its variance. Targets carry Gaussian
noise of variance `noise_std^2`, which is therefore the best achievable mean squared error:
a target below it is rejected. The metric is the validation MSE (lower is better).
Targets, budget and step hint are in configs/workload/teacher_student.yaml.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from harness.core.checks import check_choice, finite_number, whole_number
from harness.core.spec import LossType, MetricDirection, Tensor
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload
from workloads.mnist1d_mlp import ACTIVATIONS


def teacher_student_splits(dataset_seed: int, dim: int, outputs: int, condition: float, noise_std: float, sizes: tuple[int, int, int]) -> Splits:
    """Train / validation / test drawn from one fixed teacher; output variance is ~1."""
    rng = np.random.default_rng([dataset_seed, 0x7465616368])
    rotation, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = condition ** (-0.5 * np.linspace(0.0, 1.0, dim))
    mixing = rotation * scales  # x = z diag(s) Q^T: covariance Q diag(s^2) Q^T
    teacher_in = rng.standard_normal((dim, 4 * dim)) / math.sqrt(dim)
    teacher_out = rng.standard_normal((4 * dim, outputs)) / math.sqrt(4 * dim)
    unmix = np.linalg.inv(mixing.T)  # the teacher sees whitened inputs z

    def draw(n: int) -> Split:
        x = rng.standard_normal((n, dim)) @ mixing.T
        clean = np.tanh(2.0 * (x @ unmix) @ teacher_in) @ teacher_out
        clean /= 0.5  # output scale ~1
        y = clean + noise_std * rng.standard_normal(clean.shape)
        return Split(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))

    train, validation, test = (draw(n) for n in sizes)
    return Splits(train, validation, test, eval_train_size=min(sizes[1], sizes[0]))


class TeacherStudent(TensorWorkload):
    target_metric_name = "mse"
    target_metric_direction = MetricDirection.MINIMIZE
    loss_kind = LossType.MEAN_SQUARED_ERROR

    def __init__(
        self, *, dim: int = 32, outputs: int = 4, condition: float = 1e4, noise_std: float = 0.1,
        num_train: int = 16384, num_holdout: int = 2048, hidden: int = 256, depth: int = 2, activation: str = "tanh", **common,
    ):
        self.dim, self.outputs = whole_number("dim", dim), whole_number("outputs", outputs)
        self.condition, self.noise_std = finite_number("condition", condition, minimum=1), finite_number("noise_std", noise_std, minimum=0)
        self.num_train, self.num_holdout = whole_number("num_train", num_train), whole_number("num_holdout", num_holdout)
        self.hidden, self.depth, self.activation = whole_number("hidden", hidden), whole_number("depth", depth), check_choice("activation", activation, ACTIVATIONS)
        super().__init__(**common)

    def data_settings(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("dim", "outputs", "condition", "noise_std", "num_train", "num_holdout")}

    def make_splits(self, dataset_seed: int) -> Splits:
        return teacher_student_splits(dataset_seed, self.dim, self.outputs, self.condition, self.noise_std, (self.num_train, self.num_holdout, self.num_holdout))

    def build_model(self) -> nn.Module:
        layers: list[nn.Module] = []
        width = self.dim
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), ACTIVATIONS[self.activation](), nn.Dropout(0.0)]
            width = self.hidden
        return nn.Sequential(*layers, nn.Linear(width, self.outputs))

    def metric_sums(self, logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> dict[str, Tensor]:
        return {"mse": (logits - targets).square().mean(1).sum()}

    @property
    def optimal_loss(self) -> float:
        """The noise variance: the expected MSE of the teacher itself."""
        return self.noise_std ** 2

    def target_bounds(self) -> tuple[float, float]:
        return (self.optimal_loss, math.inf)
