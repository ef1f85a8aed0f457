"""From a submission config to a loaded submission: its module, search space and default point.

Submissions are discovered by convention: every `configs/submission/<name>.yaml` is one. A
config with `module:` names a Python module with AlgoPerf's five functions; its `search_space`
is a JSON file path, relative to `submissions/` unless absolute, or an inline mapping."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    return sorted(p.stem for p in (CONFIG_DIR / "submission").glob("*.yaml") if not p.stem.startswith("_"))


def load_submission(cfg: Mapping[str, object]) -> LoadedSubmission:
    name = str(cfg.get("name", "?"))
    where = f"configs/submission/{name}.yaml"
    if "module" not in cfg:
        raise PacerUserError(f"{where}: needs `module:` (a Python module with AlgoPerf's submission functions)")
    impl = _import_module(str(cfg["module"]), where)
    space = _load_search_space(cfg.get("search_space"), where)
    default = dict(cfg.get("default") or {})
    space.check(default, f"{where} default")
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
