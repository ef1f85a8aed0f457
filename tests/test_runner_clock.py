"""The runner on the normalized clock: the same seed gives the same trajectory on a fast or a
slow machine, only the clock moves; budgets and targets are read in reference seconds; the
reference computation leaves the training state alone; a wall workload is unchanged."""

from __future__ import annotations

import json
import os
import time
import types
from pathlib import Path

import pytest
import torch
from conftest import SUITE_SIZES, FakeSubmission, ScriptedWorkload
from test_cpu_suite import pinned_nadamw
from test_timer import FakeTime

from harness.core import timer
from harness.core.runner import Runner, RunSettings
from harness.core.spec import Hyperparameters
from harness.plugins.workloads import build_workload, workload_config

STEP_SEC, PROBE_SEC = 0.01, 0.001
"""Simulated seconds of one training step and one reference computation on the calibration host."""


class NormalizedScripted(ScriptedWorkload):
    """The scripted workload on the normalized clock, on a simulated machine `slowdown` times
    slower than the calibration host."""

    def __init__(self, fake: FakeTime, slowdown: float, eval_every_steps: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.clock, self.reference_step_sec, self.eval_every_steps = "normalized", PROBE_SEC, eval_every_steps
        self.fake, self.slowdown = fake, slowdown

    def reference_computation(self):
        real = super().reference_computation()

        def compute() -> None:
            real()  # the real computation runs: it must not disturb training
            self.fake.advance(PROBE_SEC * self.slowdown)

        return compute


class SimulatedSubmission(FakeSubmission):
    """SGD whose every step takes STEP_SEC x slowdown simulated seconds."""

    def __init__(self, fake: FakeTime, slowdown: float):
        super().__init__()
        self.fake, self.slowdown = fake, slowdown

    def update_params(self, *args, **kwargs):
        self.fake.advance(STEP_SEC * self.slowdown)
        return super().update_params(*args, **kwargs)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(timer, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def run(fake: FakeTime, slowdown: float, **kwargs) -> tuple[object, list[dict[str, float]]]:
    settings = {k: kwargs.pop(k) for k in ("max_steps",) if k in kwargs}
    torch.manual_seed(0)
    rows: list[dict[str, float]] = []
    workload = NormalizedScripted(fake, slowdown, **kwargs)
    outcome = Runner(workload, SimulatedSubmission(fake, slowdown), Hyperparameters({}), RunSettings(seed=3, **settings), rows.append).run()
    return outcome, rows


def trajectory(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith("accumulated_") and k != "total_duration"} for row in rows]


def test_same_seed_same_eval_sequence_on_a_fast_and_a_slow_machine(fake_time):
    fast, fast_rows = run(fake_time, slowdown=0.5, max_steps=40)
    slow, slow_rows = run(fake_time, slowdown=4.0, max_steps=40)
    assert fast.status == slow.status == "step_cap"
    assert [r["global_step"] for r in fast_rows] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert trajectory(fast_rows) == trajectory(slow_rows)
    for a, b in zip(fast_rows, slow_rows, strict=True):
        assert a["accumulated_submission_time"] == pytest.approx(b["accumulated_submission_time"])
        assert a["accumulated_submission_time"] == pytest.approx(a["global_step"] * STEP_SEC)
        assert b["accumulated_raw_submission_time"] == pytest.approx(8 * a["accumulated_raw_submission_time"])


def test_budget_is_spent_in_reference_seconds(fake_time):
    """Budget 0.205 reference s: spent after the 21st step of 0.01 s on either machine; the
    slow one has taken 0.84 wall seconds by then, the fast one 0.105."""
    fast, fast_rows = run(fake_time, slowdown=0.5, max_runtime_sec=0.205, max_steps=100)
    slow, slow_rows = run(fake_time, slowdown=4.0, max_runtime_sec=0.205, max_steps=100)
    assert fast.status == slow.status == "budget_exhausted"
    assert fast.global_step == slow.global_step == 21
    assert trajectory(fast_rows) == trajectory(slow_rows)
    assert slow_rows[-1]["accumulated_raw_submission_time"] > 0.2 > fast_rows[-1]["accumulated_raw_submission_time"]


def test_time_to_target_in_reference_seconds_and_wall_seconds(fake_time):
    outcome, rows = run(fake_time, slowdown=3.0, metric_script=[0.1, 0.2, 0.9], validation_target=0.8, max_steps=100)
    assert outcome.status == "reached" and outcome.steps_to_target["validation"] == 10
    assert outcome.time_to_target["validation"] == pytest.approx(10 * STEP_SEC)
    assert outcome.raw_time_to_target["validation"] == pytest.approx(3 * 10 * STEP_SEC)


def test_the_reference_computation_leaves_the_training_state_alone():
    workload = ScriptedWorkload()
    params, _ = workload.init_model_fn(rng=7)
    before = {k: v.clone() for k, v in params.state_dict().items()}
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    queue = workload.build_input_queue(5, 8)
    compute = workload.reference_computation()
    for _ in range(3):
        compute()
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(torch.equal(v, before[k]) for k, v in params.state_dict().items())
    assert all(p.grad is None for p in params.parameters())
    assert queue.state_dict() == {"epoch": 0, "offset": 0}


def test_a_wall_workload_counts_wall_seconds_and_its_rows_agree():
    rows: list[dict[str, float]] = []
    Runner(ScriptedWorkload(), FakeSubmission(update_sleep=0.002), Hyperparameters({}), RunSettings(seed=0, max_steps=6, eval_every_steps=3), rows.append).run()
    assert [r["global_step"] for r in rows] == [1, 3, 6]
    assert all(r["accumulated_submission_time"] == r["accumulated_raw_submission_time"] for r in rows)
    assert rows[-1]["accumulated_submission_time"] >= 6 * 0.002


GOLDEN = Path(__file__).resolve().parent / "golden" / "normalized_eval_sequence.json"


class SlowMachine:
    """A submission that also sleeps `extra_sec` per step, as on a slower or busier machine."""

    def __init__(self, impl: object, extra_sec: float):
        self.impl, self.extra_sec = impl, extra_sec

    def __getattr__(self, name: str) -> object:
        return getattr(self.impl, name)

    def update_params(self, *args, **kwargs):
        time.sleep(self.extra_sec)
        return self.impl.update_params(*args, **kwargs)


def _mnist1d_mlp_eval_sequence(data_dir: Path, extra_sec: float) -> tuple[list[dict[str, float]], object]:
    cfg = workload_config("mnist1d_mlp") | SUITE_SIZES["mnist1d_mlp"] | {"data_dir": str(data_dir), "step_hint": 1000, "eval_every_steps": 10}
    workload = build_workload(cfg)
    assert workload.clock == "normalized"
    sub, hp = pinned_nadamw()
    rows: list[dict[str, float]] = []
    outcome = Runner(workload, SlowMachine(sub.impl, extra_sec), hp, RunSettings(seed=0, max_steps=30, max_runtime_sec=600, stop_at_target=False), rows.append).run()
    assert outcome.status == "step_cap", outcome.error
    return trajectory(rows), rows


def test_real_workload_same_eval_sequence_on_a_quiet_and_a_slow_machine(tmp_path_factory):
    """mnist1d_mlp at its calibrated size, the pinned NAdamW point (test_cpu_suite.NADAMW_POINT), seed 0: the eval sequence is
    the golden one whether each step takes its time or 20 ms more; only the clock differs."""
    data_dir = tmp_path_factory.getbasetemp() / "golden-data"
    quiet, quiet_rows = _mnist1d_mlp_eval_sequence(data_dir, 0.0)
    slow, slow_rows = _mnist1d_mlp_eval_sequence(data_dir, 0.02)
    assert [r["global_step"] for r in quiet] == [1, 10, 20, 30]
    assert quiet == slow
    assert slow_rows[-1]["accumulated_raw_submission_time"] > quiet_rows[-1]["accumulated_raw_submission_time"] + 30 * 0.02 * 0.9
    sequence = [{k: row[k] for k in ("global_step", "validation/loss", "validation/accuracy")} for row in quiet]
    if os.environ.get("PACER_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(sequence, indent=2) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert [r["global_step"] for r in sequence] == [r["global_step"] for r in golden]
    for row, expected in zip(sequence, golden, strict=True):
        assert row["validation/loss"] == pytest.approx(expected["validation/loss"], rel=1e-4)
        assert row["validation/accuracy"] == pytest.approx(expected["validation/accuracy"], abs=1e-3)
