"""AdAdaGrad: the batch-size tests, and a run on a noisy quadratic through the real runner."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from harness.core.runner import Runner, RunSettings
from harness.core.spec import Hyperparameters, LossType, MetricDirection
from harness.plugins import submission_kit
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload
from submissions import adadagrad

DIM, NOISE = 10, 0.1


class NoisyQuadratic(TensorWorkload):
    """Least squares y = <x, w*> + noise: the gradient vanishes at the optimum, its noise does not."""

    loss_kind = LossType.MEAN_SQUARED_ERROR
    target_metric_name = "loss"
    target_metric_direction = MetricDirection.MINIMIZE

    def make_splits(self, dataset_seed: int) -> Splits:
        generator = torch.Generator().manual_seed(dataset_seed)
        x = torch.randn(5000, DIM, generator=generator)
        y = x @ torch.randn(DIM, 1, generator=generator) + NOISE * torch.randn(5000, 1, generator=generator)
        return Splits(Split(x[:4000], y[:4000]), Split(x[4000:4500], y[4000:4500]), Split(x[4500:], y[4500:]), eval_train_size=500)

    def build_model(self) -> nn.Module:
        return nn.Linear(DIM, 1)

    def metric_sums(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {}


def per_example_norm_test(grads: torch.Tensor, eta: float) -> float:
    """The paper's norm test with per-example gradients: sample variance / (eta^2 ||mean||^2)."""
    mean = grads.mean(0)
    variance = (grads - mean).square().sum() / (len(grads) - 1)
    return float(variance / (eta ** 2 * mean.square().sum()))


def test_norm_test_with_one_example_per_microbatch_is_the_per_example_test() -> None:
    grads = torch.randn(32, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    assert adadagrad.norm_test_batch_size(grads, 32, 0.7) == pytest.approx(per_example_norm_test(grads, 0.7), rel=1e-12)


@pytest.mark.parametrize("test", sorted(adadagrad.BATCH_TESTS))
def test_noisy_gradients_fail_the_test_and_clean_ones_pass(test: str) -> None:
    generator = torch.Generator().manual_seed(1)
    signal = torch.ones(50, dtype=torch.float64)
    clean = signal + 0.01 * torch.randn(8, 50, dtype=torch.float64, generator=generator)
    noisy = signal * (1.0 + 5.0 * torch.randn(8, 1, dtype=torch.float64, generator=generator))  # noise along the gradient: fails both tests
    required = adadagrad.BATCH_TESTS[test]
    assert required(clean, 64, 0.5) <= 64
    assert required(noisy, 64, 0.5) > 64


def test_batch_grows_examples_are_counted_and_it_converges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submission_kit, "reference_batch_size", lambda name: 64)  # the test workload has no config
    workload = NoisyQuadratic(name="noisy_quadratic", validation_target=2 * NOISE ** 2, test_target=1.0, max_runtime_sec=600, eval_period_sec=1, step_hint=1000, batch_size=64)
    sizes: list[int] = []

    def recording_selection(*args, **kwargs):
        batch = adadagrad.data_selection(*args, **kwargs)
        sizes.append(len(batch["inputs"]))
        return batch

    submission = types.SimpleNamespace(
        get_batch_size=adadagrad.get_batch_size, init_optimizer_state=adadagrad.init_optimizer_state,
        update_params=adadagrad.update_params, data_selection=recording_selection)
    hparams = Hyperparameters({"learning_rate": 0.5, "variant": "adagrad", "batch_test": "norm", "eta": 0.5,
                               "num_microbatches": 8, "max_batch_factor": 16, "label_smoothing": 0.0, "dropout_rate": 0.0})
    outcome = Runner(workload, submission, hparams, RunSettings(seed=0, max_steps=400, eval_every_steps=25)).run()

    assert outcome.error is None, outcome.error
    assert sizes[0] == 16 and sizes == sorted(sizes) and sizes[-1] > 4 * sizes[0], sizes
    assert outcome.examples_seen == sum(sizes)
    for row in outcome.evals:
        assert row["examples_seen"] == sum(sizes[:row["global_step"]])
    assert outcome.status == "reached", (outcome.status, outcome.evals[-1]["validation/loss"])
    assert outcome.examples_to_target["validation"] == sum(sizes[:outcome.steps_to_target["validation"]])
