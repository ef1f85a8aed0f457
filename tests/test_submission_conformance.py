"""Every submission x every workload: 20 steps at the default point train the model.

Both lists are discovered (configs/submission/*.yaml, configs/suite/cpu.yaml), so a new
submission joins this suite without an edit here; a new workload adds its sizes to
conftest.SUITE_SIZES. Data and model sizes come from there, not from configs/workload/*.yaml,
so that the production sizes can grow without slowing this suite or moving its results."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SUITE_SIZES
from omegaconf import OmegaConf

from harness import rng as rnglib
from harness.hparams import resolve
from harness.spec import ForwardPassMode, Workload
from harness.submissions import LoadedSubmission, load_submission, submission_names
from harness.workloads import CONFIG_DIR, build_workload, suite_workloads, workload_config

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
