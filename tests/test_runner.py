"""The runner's timing and stopping rules (AlgoPerf's), on a scripted workload."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import FakeSubmission, ScriptedWorkload

from harness.core.runner import Runner, RunSettings
from harness.core.spec import Hyperparameters, MetricDirection

NO_HPARAMS = Hyperparameters({})


def run(workload, submission, **settings):
    rows = []
    outcome = Runner(workload, submission, NO_HPARAMS, RunSettings(seed=0, **settings), rows.append).run()
    return outcome, rows


def test_eval_time_is_not_counted():
    outcome, rows = run(ScriptedWorkload(eval_sleep=0.3), FakeSubmission(update_sleep=0.01), max_steps=10, eval_every_steps=2)
    assert outcome.status == "step_cap" and len(rows) == 6  # step 1, then every 2nd step
    last = rows[-1]
    assert last["accumulated_eval_time"] >= 5 * 0.3
    assert last["accumulated_submission_time"] >= 10 * 0.01
    # The phases are disjoint: had eval time leaked into submission time, the sum would
    # exceed the wall time by the 1.5 s of eval sleeps.
    phases = last["accumulated_submission_time"] + last["accumulated_eval_time"] + last["accumulated_logging_time"]
    assert phases <= last["total_duration"] + 1e-3


def test_data_selection_and_prepare_for_eval_are_counted():
    outcome, rows = run(ScriptedWorkload(), FakeSubmission(select_sleep=0.02, prepare_sleep=0.05), max_steps=4, eval_every_steps=1)
    assert len(rows) == 4
    # 4 data selections + 4 prepare_for_eval calls (one before each eval)
    assert rows[-1]["accumulated_submission_time"] >= 4 * 0.02 + 4 * 0.05


def test_first_eval_after_step_one_then_wall_clock_period():
    outcome, rows = run(ScriptedWorkload(eval_period_sec=0.1), FakeSubmission(update_sleep=0.02), max_steps=20)
    assert rows[0]["global_step"] == 1
    steps = [r["global_step"] for r in rows]
    assert 1 < len(steps) < 20
    gaps = [b["total_duration"] - b["accumulated_eval_time"] - (a["total_duration"] - a["accumulated_eval_time"]) for a, b in zip(rows, rows[1:], strict=False)]
    assert all(g >= 0.1 - 1e-3 for g in gaps)


@pytest.mark.parametrize(("direction", "script", "target"), [
    (MetricDirection.MAXIMIZE, [0.1, 0.5, 0.9, 0.95], 0.8),
    (MetricDirection.MINIMIZE, [1.0, 0.5, 0.2, 0.1], 0.3),
])
def test_target_detection_in_both_directions(direction, script, target):
    outcome, rows = run(ScriptedWorkload(script, direction, validation_target=target), FakeSubmission(), max_steps=50, eval_every_steps=1)
    assert outcome.status == "reached"
    assert len(rows) == 3  # stops at the first eval meeting the target
    assert outcome.time_to_target["validation"] == rows[2]["accumulated_submission_time"]
    assert outcome.steps_to_target["validation"] == 3
    assert outcome.examples_to_target["validation"] == 24
    assert outcome.time_to_target["test"] == rows[2]["accumulated_submission_time"]


def test_budget_stop_without_late_eval():
    budget = 0.3
    outcome, rows = run(ScriptedWorkload(max_runtime_sec=budget), FakeSubmission(update_sleep=0.05), eval_every_steps=1)
    assert outcome.status == "budget_exhausted"
    assert rows and all(r["accumulated_submission_time"] < budget for r in rows)
    assert outcome.global_step > len(rows)  # the step that crossed the budget got no eval


def test_nonfinite_loss_ends_run_as_diverged():
    outcome, rows = run(ScriptedWorkload(), FakeSubmission(nan_at=2), max_steps=20, eval_every_steps=1)
    assert outcome.status == "diverged"
    assert math.isnan(rows[-1]["train/loss"]) and rows[-1]["global_step"] == 3


def test_submission_exception_ends_run_as_error_with_traceback():
    outcome, rows = run(ScriptedWorkload(), FakeSubmission(raise_at=3), max_steps=20, eval_every_steps=1)
    assert outcome.status == "error"
    assert "ValueError: boom at the chosen step" in outcome.error and "update_params" in outcome.error
    assert len(rows) == 3


def test_training_complete_gets_one_final_eval():
    outcome, rows = run(ScriptedWorkload(), FakeSubmission(complete_at=5), max_steps=50, eval_every_steps=100)
    assert outcome.status == "complete"
    assert [r["global_step"] for r in rows] == [1, 5]


def test_training_complete_eval_can_still_reach_the_target():
    outcome, rows = run(ScriptedWorkload([0.0, 1.0]), FakeSubmission(complete_at=5), max_steps=50, eval_every_steps=100)
    assert outcome.status == "reached"


def test_step_cap():
    outcome, rows = run(ScriptedWorkload(), FakeSubmission(), max_steps=7, eval_every_steps=3)
    assert outcome.status == "step_cap" and outcome.global_step == 7 and outcome.examples_seen == 56


def test_train_state_is_read_only_and_current():
    seen = []

    class Peek(FakeSubmission):
        def update_params(self, **kwargs):
            train_state = kwargs["train_state"]
            seen.append(dict(train_state))
            with pytest.raises(TypeError):
                train_state["global_step"] = 99
            return super().update_params(**kwargs)

    outcome, _ = run(ScriptedWorkload(), Peek(), max_steps=3, eval_every_steps=1)
    assert outcome.status == "step_cap", outcome.error
    assert [s["global_step"] for s in seen] == [0, 1, 2]
    assert seen[2]["last_eval_results"]["validation/score"] == 0.0


class DrawingAtEval(ScriptedWorkload):
    """A workload whose eval draws from every global random stream."""

    def eval_model(self, global_batch_size, params, model_state, rng, global_step):
        torch.rand(3), np.random.rand(), random.random()
        return super().eval_model(global_batch_size, params, model_state, rng, global_step)


class RecordingStreams(FakeSubmission):
    """Records the global streams at each step and draws from all of them in `prepare_for_eval`."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def update_params(self, **arguments):
        self.seen.append((torch.rand(1).item(), np.random.rand(), random.random()))
        return super().update_params(**arguments)

    def prepare_for_eval(self, workload, current_param_container, current_params_types, model_state, hyperparameters, loss_type, optimizer_state, eval_results, global_step, rng):
        torch.rand(3), np.random.rand(), random.random()
        return optimizer_state, current_param_container, model_state


def test_eval_time_draws_leave_the_training_streams_alone():
    """torch, numpy and Python draws in `prepare_for_eval` and in the eval change nothing the
    training steps draw: the same values at every step for one eval or six."""
    seen = []
    for every in (1, 6):
        submission = RecordingStreams()
        run(DrawingAtEval(), submission, max_steps=6, eval_every_steps=every)
        seen.append(submission.seen)
    assert len(seen[0]) == 6 and seen[0] == seen[1]
