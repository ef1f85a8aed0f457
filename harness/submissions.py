"""From a submission config to a loaded submission: its module, search space and default point.

Submissions are discovered by convention: every `configs/submission/<name>.yaml` is one. A
config with `module:` names a Python module with AlgoPerf's five functions; a config with
`optimizer:` is a config-only submission (`harness.config_submission`). Either way its
`search_space` is a JSON file path, relative to `submissions/` unless absolute, or an inline
mapping, and its `default` is checked against it."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.config_submission import build_config_submission
from harness.errors import PacerUserError
from harness.hparams import SearchSpace, Value
from harness.spec import Submission
from harness.workloads import CONFIG_DIR

SUBMISSIONS_DIR = Path(__file__).resolve().parent.parent / "submissions"
REQUIRED_FUNCTIONS = ("get_batch_size", "init_optimizer_state", "update_params", "data_selection")


@dataclass(frozen=True)
class LoadedSubmission:
    name: str
    impl: Submission
    search_space: SearchSpace
    default: dict[str, Value]


def submission_names() -> list[str]:
    """Every submission: the stems of configs/submission/*.yaml (but `_template`-like ones)."""
    return sorted(p.stem for p in (CONFIG_DIR / "submission").glob("*.yaml") if not p.stem.startswith("_"))


def check_submission_names(names: Sequence[str]) -> None:
    """Raise `PacerUserError` naming every one of `names` that is not a submission, and the valid ones."""
    valid = submission_names()
    if unknown := sorted(set(names) - set(valid)):
        raise PacerUserError(f"unknown submission(s) {', '.join(unknown)} (valid: {', '.join(valid)})")


def load_submission(cfg: Mapping[str, object]) -> LoadedSubmission:
    """Check a submission config and load its implementation; raise `PacerUserError` naming the file and key."""
    name = str(cfg.get("name", "?"))
    where = f"configs/submission/{name}.yaml"
    if ("module" in cfg) == ("optimizer" in cfg):
        raise PacerUserError(f"{where}: needs exactly one of `module:` (a Python module with AlgoPerf's submission functions) or `optimizer:` (a config-only submission)")
    space = _load_search_space(cfg.get("search_space"), where)
    default = dict(cfg.get("default") or {})
    space.check(default, f"{where} default")
    if "module" in cfg:
        impl = _import_module(str(cfg["module"]), where)
    else:
        impl = build_config_submission(cfg, space, default, where)
    return LoadedSubmission(name, impl, space, default)


def _import_module(module_name: str, where: str) -> Submission:
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PacerUserError(f"{where}: cannot import module {module_name!r} ({e})") from None
    missing = [f for f in REQUIRED_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise PacerUserError(f"{where}: module {module_name} lacks submission function(s) {', '.join(missing)}")
    return module


def _load_search_space(spec: object, where: str) -> SearchSpace:
    if spec is None:
        raise PacerUserError(f"{where}: needs `search_space:` (a JSON file or an inline mapping)")
    if isinstance(spec, str):
        path = Path(spec) if Path(spec).is_absolute() else SUBMISSIONS_DIR / spec
        return SearchSpace.from_file(path)
    return SearchSpace.from_mapping(spec, where)
