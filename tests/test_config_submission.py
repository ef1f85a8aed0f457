"""Config-only submissions: a YAML runs end to end, maps hyperparameters onto optimizer
arguments, and bad input fails early with one line naming the file and the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from harness import cli
from harness.core.errors import PacerUserError
from harness.plugins.config_submission import ConfigSubmission
from harness.plugins.hparams import resolve
from harness.plugins.submissions import SUBMISSIONS_DIR, load_submission, submission_names
from harness.plugins.workloads import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]


def adam_config(**changes: object) -> dict[str, object]:
    """A config-only submission for torch.optim.Adam, as `load_submission` receives it."""
    cfg: dict[str, object] = {
        "name": "my_adam",
        "optimizer": {"_target_": "torch.optim.Adam", "eps": 1e-7},
        "schedule": "constant",
        "hyperparameters": {"learning_rate": "lr", "one_minus_beta1": "1 - betas[0]"},
        "search_space": {"learning_rate": {"min": 1e-4, "max": 1e-1, "scaling": "log"},
                         "one_minus_beta1": {"min": 0.01, "max": 0.5, "scaling": "log"},
                         "label_smoothing": {"feasible_points": [0.0]}},
        "default": {"learning_rate": 0.01, "one_minus_beta1": 0.2, "label_smoothing": 0.0},
    }
    cfg.update(changes)
    return cfg


def test_config_only_yaml_without_python_runs_end_to_end(tmp_path: Path) -> None:
    yaml_only = [n for n in submission_names() if "optimizer" in OmegaConf.load(CONFIG_DIR / "submission" / f"{n}.yaml")]
    assert "lion" in yaml_only and not (SUBMISSIONS_DIR / "lion.py").exists()
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "submission=lion", "workload=mnist1d_mlp", "max_steps=30", "eval_every_steps=10",
         "workload.num_samples=1000", "workload.hidden=64", "max_runtime_sec=600", f"results_root={tmp_path}", "--quiet"],  # a loaded machine must not exhaust the budget
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("run.json")).read_text())
    assert record["submission"] == "lion" and record["status"] == "step_cap" and record["final"]["global_step"] == 30
    evals = [json.loads(line) for line in next(tmp_path.rglob("evals.jsonl")).read_text().splitlines()]
    assert [e["global_step"] for e in evals] == [1, 10, 20, 30] and evals[-1]["train/loss"] < evals[0]["train/loss"]


def test_hyperparameters_map_onto_optimizer_arguments() -> None:
    loaded = load_submission(adam_config())
    assert isinstance(loaded.impl, ConfigSubmission)
    kwargs = loaded.impl.optimizer_kwargs(resolve(loaded.search_space, loaded.default, {"learning_rate": 0.05}, "test"))
    assert kwargs == {"eps": 1e-7, "lr": 0.05, "betas": (0.8, 0.999)}  # betas[1] keeps Adam's default


def test_user_module_optimizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_optimizers.py").write_text(
        "import torch\n\n"
        "class SignDescent(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=0.1):\n"
        "        super().__init__(params, {'lr': lr})\n\n"
        "    @torch.no_grad()\n"
        "    def step(self, closure=None):\n"
        "        for group in self.param_groups:\n"
        "            for p in group['params']:\n"
        "                p.add_(p.grad.sign(), alpha=-group['lr'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = adam_config(optimizer={"_target_": "my_optimizers.SignDescent"}, hyperparameters={"learning_rate": "lr"})
    cfg["search_space"].pop("one_minus_beta1")
    cfg["default"].pop("one_minus_beta1")
    loaded = load_submission(cfg)
    parameter = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    optimizer = loaded.impl.optimizer_class([parameter], **loaded.impl.optimizer_kwargs(loaded.default))
    parameter.grad = torch.tensor([3.0, -0.5])
    optimizer.step()
    torch.testing.assert_close(parameter.detach(), torch.tensor([0.99, -0.99]))


@pytest.mark.parametrize("changes, culprit", [
    ({"optimizer": {"_target_": "torch.nn.Linear"}}, "optimizer._target_: torch.nn.Linear is not a torch.optim.Optimizer subclass"),
    ({"optimizer": {"_target_": "torch.optim.NoSuchOptimizer"}}, "optimizer._target_: cannot import"),
    ({"optimizer": {"_target_": "torch.optim.Adam", "epsilon": 1e-8}}, "optimizer.epsilon: Adam takes no argument 'epsilon'"),
    ({"schedule": "cosine"}, "schedule: 'cosine' is not one of"),
    ({"hyperparameters": {"learning_rate": "learning_rate"}}, "hyperparameters.learning_rate: Adam takes no argument 'learning_rate'"),
    ({"hyperparameters": {"learning_rate": "lr", "one_minus_beta1": "1 - betas[0]", "beta2": "betas[1]"}}, "hyperparameters.beta2: not in the search space"),
    ({"search_space": {"learning_rate": {"min": 1e-4, "max": 1e-1, "scalling": "log"}}}, "configs/submission/my_adam.yaml: learning_rate: unknown key(s) scalling"),
    ({"search_space": {"learning_rate": {"min": 1e-4, "max": 1e-1}, "one_minus_beta1": {"min": 0.01, "max": 0.5}, "label_smoothing": {"feasible_points": [0.0]},
                       "learnig_rate": {"min": 1e-4, "max": 1e-1}}}, "search_space.learnig_rate: not mapped to an optimizer argument"),
    ({"default": {"learning_rate": 5.0, "one_minus_beta1": 0.2, "label_smoothing": 0.0}}, "learning_rate=5.0 is outside its search space"),
    ({"optimzer": {}}, "unknown key(s) optimzer"),
    ({"checkpoint_classes": ["torch.NoSuchClass"]}, "checkpoint_classes: cannot import 'torch.NoSuchClass'"),
    ({"checkpoint_classes": ["os.system"]}, "checkpoint_classes: os.system is not a class"),
    ({"checkpoint_classes": "torch.Tensor"}, "checkpoint_classes: expected a list of dotted class paths"),
])
def test_bad_config_names_the_file_and_key(changes: dict[str, object], culprit: str) -> None:
    with pytest.raises(PacerUserError) as caught:
        load_submission(adam_config(**changes))
    message = str(caught.value)
    assert "configs/submission/my_adam.yaml" in message and culprit in message, message
    assert "\n" not in message


def test_bad_search_space_file_names_the_file_and_key(tmp_path: Path) -> None:
    space = tmp_path / "typo.json"
    space.write_text(json.dumps({"learning_rate": {"min": 1e-3, "max": 1.0, "scaling": "logarithmic"}}))
    with pytest.raises(PacerUserError, match=r"typo\.json: learning_rate: scaling 'logarithmic' is not one of linear, log"):
        load_submission({"name": "momentum", "module": "submissions.momentum", "search_space": str(space), "default": {}})


def test_cli_rejects_a_hyperparameter_outside_its_space_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "submission=lion", "hparams.learning_rate=5.0", f"results_root={tmp_path}"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("pacer: error: ") and "learning_rate=5.0 is outside its search space" in stderr
    assert "configs/submission/lion.yaml" in stderr
    assert not list(tmp_path.rglob("run.json"))
