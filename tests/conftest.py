"""Shared test pieces: a tiny scripted workload and configurable fake submissions for testing
the runner's timing rules, and helpers to call the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.core.spec import MetricDirection, TrainingCompleteError
from harness.plugins import submission_kit
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload

REPO = Path(__file__).resolve().parents[1]
SUITE_SIZES: dict[str, dict[str, int]] = {
    "mnist1d_mlp": {"num_samples": 10000, "eval_train_size": 2000, "hidden": 256, "depth": 2},
    "mnist1d_cnn": {"num_samples": 10000, "eval_train_size": 2000, "channels": 32, "depth": 3},
    "digits_cnn": {"num_train": 500, "channels": 16},
    "markov_lm": {"seq_len": 32, "min_len": 16, "num_train": 8192, "num_holdout": 256, "width": 64, "depth": 2, "heads": 4},
    "teacher_student": {"dim": 32, "outputs": 4, "num_train": 16384, "num_holdout": 2048, "hidden": 256, "depth": 2},
}
"""The CPU suite's data and model sizes when its targets were calibrated (28 Nov 2026). Tests
that compare with numbers measured at these sizes (golden losses, the conformance suite) pin them
over configs/workload/*.yaml, so that the production sizes can grow without moving those numbers."""
SMALL_SIZES: dict[str, dict[str, int]] = {
    "mnist1d_mlp": {"num_samples": 600, "eval_train_size": 100, "hidden": 32},
    "mnist1d_cnn": {"num_samples": 600, "eval_train_size": 100, "channels": 8},
    "digits_cnn": {"channels": 8},
    "markov_lm": {"num_train": 64, "num_holdout": 32, "width": 32},
    "teacher_student": {"num_train": 256, "num_holdout": 64, "hidden": 32},
}
"""The CPU suite's data and model sizes for tests that compare with no measured number."""


class ScriptedWorkload(TensorWorkload):
    """A linear model on random data whose validation metric follows a script, so that the
    runner's decisions (targets, budget, divergence) can be tested exactly. Loss is real."""

    target_metric_name = "score"

    def __init__(self, metric_script: Sequence[float] = (0.0,), direction: MetricDirection = MetricDirection.MAXIMIZE,
                 eval_sleep: float = 0.0, validation_target: float = 1.0, max_runtime_sec: float = 60.0, eval_period_sec: float = 0.0):
        super().__init__(name="scripted", validation_target=validation_target, test_target=validation_target,
                         max_runtime_sec=max_runtime_sec, eval_period_sec=eval_period_sec, step_hint=100, batch_size=8)
        self.target_metric_direction = direction
        self.metric_script, self.eval_sleep, self.evals = list(metric_script), eval_sleep, 0

    def make_splits(self, dataset_seed: int) -> Splits:
        g = torch.Generator().manual_seed(dataset_seed)
        x, y = torch.randn(96, 4, generator=g), torch.randint(0, 3, (96,), generator=g)
        return Splits(Split(x[:64], y[:64]), Split(x[64:80], y[64:80]), Split(x[80:], y[80:]), eval_train_size=16)

    def build_model(self) -> nn.Module:
        return nn.Linear(4, 3)

    def eval_model(self, global_batch_size, params, model_state, rng, global_step):
        time.sleep(self.eval_sleep)
        results = super().eval_model(global_batch_size, params, model_state, rng, global_step)
        value = self.metric_script[min(self.evals, len(self.metric_script) - 1)]
        self.evals += 1
        return results | {f"{split}/score": value for split in ("train", "validation", "test")}


class FakeSubmission:
    """SGD on the scripted workload, with optional sleeps in each timed function and optional
    failures at a given step."""

    def __init__(self, select_sleep: float = 0.0, update_sleep: float = 0.0, prepare_sleep: float | None = None,
                 raise_at: int | None = None, complete_at: int | None = None, nan_at: int | None = None):
        self.select_sleep, self.update_sleep = select_sleep, update_sleep
        self.raise_at, self.complete_at, self.nan_at = raise_at, complete_at, nan_at
        if prepare_sleep is not None:
            def prepare_for_eval(workload, current_param_container, current_params_types, model_state, hyperparameters, loss_type, optimizer_state, eval_results, global_step, rng):
                time.sleep(prepare_sleep)
                return optimizer_state, current_param_container, model_state
            self.prepare_for_eval = prepare_for_eval

    def get_batch_size(self, workload_name):
        return 8

    def init_optimizer_state(self, workload, model_params, model_state, hyperparameters, rng):
        return {"optimizer": torch.optim.SGD(model_params.parameters(), lr=0.1)}

    def data_selection(self, workload, input_queue, optimizer_state, params, model_state, hyperparameters, global_step, rng):
        time.sleep(self.select_sleep)
        return next(input_queue)

    def update_params(self, workload, current_param_container, current_params_types, model_state, hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng, train_state=None):
        params = current_param_container
        time.sleep(self.update_sleep)
        if global_step == self.raise_at:
            raise ValueError("boom at the chosen step")
        if global_step == self.complete_at:
            raise TrainingCompleteError
        optimizer_state["optimizer"].zero_grad()
        submission_kit.forward_backward(workload, params, model_state, hyperparameters, batch, rng)
        optimizer_state["optimizer"].step()
        if global_step == self.nan_at:
            with torch.no_grad():
                next(params.parameters()).fill_(float("nan"))
        return optimizer_state, params, model_state


def pacer(*args: str, cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny models, where more threads only add overhead (and oversubscribe a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write: a read-only tmpfs for root (file modes do not bind root),
    mode 0555 for anyone else."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs: a real full disk (mounting needs root, which the CI machine has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", str(mount)], check=True)
