"""Every submission x every workload: 20 steps at the default point train the model, and the
training trajectory does not depend on the eval schedule.

Both lists are discovered (configs/submission/*.yaml, configs/suite/cpu.yaml), so a new
submission joins this suite without an edit here; a new workload adds its sizes to
conftest.SUITE_SIZES. Data and model sizes come from there, not from configs/workload/*.yaml,
so that the production sizes can grow without slowing this suite or moving its results."""

from __future__ import annotations

import hashlib
import math
import random

import numpy as np
import pytest
import torch
from conftest import SMALL_SIZES, SUITE_SIZES
from omegaconf import OmegaConf

from harness.core import rng as rnglib
from harness.core.runner import Runner, RunSettings, keyword_caller
from harness.core.spec import ForwardPassMode, Hyperparameters, Workload
from harness.plugins.hparams import resolve
from harness.plugins.submissions import LoadedSubmission, load_submission, submission_names
from harness.plugins.workloads import CONFIG_DIR, build_workload, suite_workloads, workload_config

STEPS = 20
PROBE_EXAMPLES = 512


@pytest.fixture(scope="session")
def workloads() -> dict[str, Workload]:
    """Built once per test session, so each workload's data is generated once."""
    return {}


def cached_workload(cache: dict[str, Workload], name: str) -> Workload:
    if name not in cache:
        config = workload_config(name)
        cache[name] = build_workload(config | SUITE_SIZES[str(config["name"])], None, "cpu")
    return cache[name]


def loaded(name: str) -> LoadedSubmission:
    return load_submission(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml")))


def probe_loss(workload: Workload, model: torch.nn.Module, model_state, batch) -> float:
    with torch.no_grad():
        logits, _ = workload.model_fn(model, batch, model_state, ForwardPassMode.EVAL, 0, update_batch_norm=False)
        loss = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
    return float(loss["summed"] / loss["n_valid_examples"])


def suite_cases() -> list[tuple[str, str]]:
    return [(s, w) for w in suite_workloads("cpu") for s in submission_names()]


def test_every_suite_workload_pins_its_sizes() -> None:
    assert {str(workload_config(w)["name"]) for w in suite_workloads("cpu")} <= set(SUITE_SIZES)


@pytest.mark.parametrize(("submission_name", "workload_name"), suite_cases())
def test_twenty_steps_at_the_default_point_train(workloads: dict[str, Workload], submission_name: str, workload_name: str) -> None:
    torch.manual_seed(0)  # dropout and Hutchinson draws use the global generator: same result in any test order
    workload = cached_workload(workloads, workload_name)
    submission = loaded(submission_name)
    impl = submission.impl
    hparams = resolve(submission.search_space, submission.default, {}, submission_name)
    model, model_state = workload.init_model_fn(rnglib.from_strings("init", 0), dropout_rate=hparams.get("dropout_rate"))
    probe = workload.build_input_queue(rnglib.from_strings("probe", 0), PROBE_EXAMPLES).take(PROBE_EXAMPLES)
    queue = workload.build_input_queue(rnglib.from_strings("data", 0), impl.get_batch_size(workload_name))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_before = probe_loss(workload, model, model_state, probe)

    state = impl.init_optimizer_state(workload, model, model_state, hparams, 0)
    for step in range(STEPS):
        batch = impl.data_selection(workload, queue, state, model, model_state, hparams, step, step)
        state, model, model_state = impl.update_params(workload, model, workload.model_params_types, model_state, hparams, batch, workload.loss_type, state, [], step, step)
    prepare = getattr(impl, "prepare_for_eval", None)
    if prepare is not None:
        state, model, model_state = prepare(workload, model, workload.model_params_types, model_state, hparams, workload.loss_type, state, [], STEPS, STEPS)
    loss_after = probe_loss(workload, model, model_state, probe)

    assert math.isfinite(loss_after), f"{submission_name} on {workload_name}: loss {loss_after}"
    assert loss_after < loss_before, f"{submission_name} on {workload_name}: loss {loss_before:.4f} -> {loss_after:.4f}"
    for name, p in model.named_parameters():
        assert p.dtype == before[name].dtype and p.device == workload.device, f"{name} moved to {p.dtype} on {p.device}"
        assert torch.isfinite(p).all(), name
    assert any(not torch.equal(p, before[name]) for name, p in model.named_parameters()), "no parameter changed"


EVAL_SCHEDULES = (2, 6)
"""Evals after steps 1, 2, 4 and 6, or after steps 1 and 6 only."""


class StreamRecorder:
    """A submission whose `update_params` first records the state of the global random streams
    (torch, numpy, Python): the streams its dropout masks and other training draws come from."""

    def __init__(self, impl: object):
        self.impl, self.states = impl, []
        self._update = keyword_caller(impl.update_params)

    def __getattr__(self, name: str) -> object:
        return getattr(self.impl, name)

    def update_params(self, **arguments: object) -> object:
        self.states.append(hashlib.sha256(torch.get_rng_state().numpy().tobytes() + np.random.get_state()[1].tobytes()
                                          + repr(random.getstate()).encode()).hexdigest())
        return self._update(**arguments)


@pytest.fixture(scope="session")
def small_workloads() -> dict[str, Workload]:
    return {}


@pytest.mark.parametrize(("submission_name", "workload_name"), suite_cases())
def test_the_training_trajectory_does_not_depend_on_the_eval_schedule(small_workloads: dict[str, Workload], submission_name: str, workload_name: str) -> None:
    """Everything at eval time (`prepare_for_eval`, the workload's eval) runs apart from the
    training's random streams: with dropout on, every training step draws from the same stream
    state whether 2 or 4 evals came before, and a submission without `prepare_for_eval` ends
    step 6 with the same model. (Issue case: `schedule_free_adamw` recalibrating BatchNorm on
    `digits_cnn` with train-mode forwards drew dropout masks from the training stream.) A
    submission with `prepare_for_eval` may move its parameters at each eval (schedule-free's
    y <-> x swap), whose rounding (1e-8) is all that then differs, and which Adam's
    normalization can amplify where gradients are near zero (attention's key bias)."""
    if workload_name not in small_workloads:
        config = workload_config(workload_name)
        small_workloads[workload_name] = build_workload(config | SMALL_SIZES[str(config["name"])], None, "cpu")
    workload = small_workloads[workload_name]
    submission = loaded(submission_name)
    point = dict(resolve(submission.search_space, submission.default, {}, submission_name))
    hparams = Hyperparameters(point | {"dropout_rate": 0.2})  # every eval-time draw would show in the training's dropout masks
    runs = []
    for every in EVAL_SCHEDULES:
        recorder = StreamRecorder(submission.impl)
        runner = Runner(workload, recorder, hparams, RunSettings(seed=0, max_steps=6, eval_every_steps=every, max_runtime_sec=1e6, stop_at_target=False))
        outcome = runner.run()
        assert outcome.status == "step_cap", outcome.error
        runs.append((recorder.states, len(outcome.evals), runner.params.state_dict()))
    (streams, evals, model), (other_streams, other_evals, other_model) = runs
    assert (evals, other_evals) == (4, 2)
    assert streams == other_streams, f"{submission_name} on {workload_name}: the training steps drew from other stream states"
    if not hasattr(submission.impl, "prepare_for_eval"):
        for name, tensor in model.items():
            assert torch.equal(tensor, other_model[name]), f"{submission_name} on {workload_name}: {name} differs after step 6"
