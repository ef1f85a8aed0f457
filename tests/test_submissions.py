"""The submission library as a whole: every config loads, is documented and cites a paper;
the AdamW submission is plain torch.optim.AdamW with AlgoPerf's schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from harness.core.errors import PacerUserError
from harness.core.spec import LossType
from harness.plugins.hparams import resolve
from harness.plugins.submissions import SUBMISSIONS_DIR, check_submission_names, load_submission, submission_names
from harness.plugins.tensor_workload import Split, Splits, TensorWorkload
from harness.plugins.workloads import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("adamw", "nadamw", "sgd_nesterov", "momentum", "adamp", "sgdp", "lion", "adabelief", "soap",
           "adahessian", "exadam", "shampoo", "schedule_free_adamw", "mfac", "adadagrad")


def config(name: str) -> dict[str, object]:
    return OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / f"{name}.yaml"))


def test_the_library_is_complete_and_documented() -> None:
    names = submission_names()
    assert set(LIBRARY) <= set(names)
    doc = (ROOT / "docs" / "submissions.md").read_text()
    for name in names:
        assert f"`{name}`" in doc, f"docs/submissions.md does not list {name}"


def test_unknown_submission_names_are_named_with_the_valid_ones() -> None:
    check_submission_names(["adamw", "soap"])
    with pytest.raises(PacerUserError, match=r"unknown submission\(s\) lamb, madgrad \(valid: adabelief, "):
        check_submission_names(["madgrad", "adamw", "lamb"])


@pytest.mark.parametrize("name", [*submission_names(), "_template"])
def test_each_submission_loads_and_states_its_paper_and_memory(name: str) -> None:
    cfg = config(name)
    loaded = load_submission(cfg)
    resolve(loaded.search_space, loaded.default, {}, name)  # the default is a complete point of the space
    source = (CONFIG_DIR / "submission" / f"{name}.yaml").read_text()
    if "module" in cfg:
        source = (SUBMISSIONS_DIR / f"{str(cfg['module']).rpartition('.')[2]}.py").read_text()
    assert "Memory:" in source and "Hyperparameters:" in source
    assert any(word in source for word in ("Paper:", "et al.", "(ICLR", "(NeurIPS", "(arXiv"))


class Blobs(TensorWorkload):
    def make_splits(self, dataset_seed: int) -> Splits:
        generator = torch.Generator().manual_seed(dataset_seed)
        x, y = torch.randn(300, 5, generator=generator), torch.randint(0, 3, (300,), generator=generator)
        return Splits(Split(x[:200], y[:200]), Split(x[200:250], y[200:250]), Split(x[250:], y[250:]), eval_train_size=50)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))


def test_adamw_submission_is_torch_adamw_with_warmup_and_cosine_decay() -> None:
    workload = Blobs(name="blobs", validation_target=1.0, test_target=1.0, max_runtime_sec=10, eval_period_sec=1, step_hint=40, batch_size=20)
    loaded = load_submission(config("adamw"))
    hparams = resolve(loaded.search_space, loaded.default, {"label_smoothing": 0.0, "dropout_rate": 0.0}, "adamw")
    model, _ = workload.init_model_fn(0)
    reference = Blobs(name="blobs", validation_target=1.0, test_target=1.0, max_runtime_sec=10, eval_period_sec=1, step_hint=40, batch_size=20).init_model_fn(0)[0]
    plain = torch.optim.AdamW(reference.parameters(), lr=hparams.learning_rate, betas=(1 - hparams.one_minus_beta1, hparams.beta2), eps=1e-8, weight_decay=hparams.weight_decay)
    warmup = int(hparams.warmup_factor * workload.step_hint)
    state = loaded.impl.init_optimizer_state(workload, model, None, hparams, 0)
    queue = workload.build_input_queue(1, 20)
    for step in range(30):
        batch = loaded.impl.data_selection(workload, queue, state, model, None, hparams, step, step)
        state, model, _ = loaded.impl.update_params(workload, model, workload.model_params_types, None, hparams, batch, LossType.SOFTMAX_CROSS_ENTROPY, state, [], step, step)
        factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (workload.step_hint - warmup)))
        for group in plain.param_groups:
            group["lr"] = hparams.learning_rate * factor
        plain.zero_grad()
        nn.functional.cross_entropy(reference(batch["inputs"]), batch["targets"]).backward()
        plain.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)
