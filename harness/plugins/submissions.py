"""From a submission config to a loaded submission: its module, search space and default point.

Submissions are discovered by convention: every `configs/submission/<name>.yaml` is one. A
config with `module:` names a Python module with AlgoPerf's five functions; a config with
`optimizer:` is a config-only submission (`harness.plugins.config_submission`); a config with `file:`
(`format: algoperf`) is an AlgoPerf submission file run as it is, and so is
`pacer run submission=path/to/submission.py` (`file_submission_config`). Its `search_space` is
a JSON file path, relative to `submissions/` unless absolute (for a `file:` submission:
relative to the file's folder, default `tuning_search_space.json` there, none: self-tuning),
or an inline mapping or list; its `default` is checked against it. Its `checkpoint_classes`
lists the classes, other than tensors and plain values, that its optimizer keeps in its state
(dotted paths, e.g. ScalableShampoo's preconditioners): a checkpoint may hold those and no others.

An AlgoPerf file is checked without running it (it parses and binds the four required
functions at top level: bad input, exit 2); it is imported only when the run starts
(`LoadedSubmission.impl`), with `harness.plugins.algoperf_api`'s stand-ins for the `algoperf` and
`absl` packages it imports, so that a failure while importing it is the run's `error`
record, not an empty folder."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from harness.core.errors import PacerUserError
from harness.core.spec import Submission
from harness.plugins import algoperf_api
from harness.plugins.config_submission import build_config_submission, import_name
from harness.plugins.hparams import SearchSpace, Value
from harness.plugins.search import trial_point
from harness.plugins.workloads import CONFIG_DIR

SUBMISSIONS_DIR = CONFIG_DIR.parent / "submissions"
REQUIRED_FUNCTIONS = ("get_batch_size", "init_optimizer_state", "update_params", "data_selection")
ALGOPERF_SEARCH_SPACE = "tuning_search_space.json"
"""The search space's file name beside an AlgoPerf submission file."""
FORMATS = ("pacer", "algoperf")


@dataclass(frozen=True)
class LoadedSubmission:
    name: str
    search_space: SearchSpace
    default: dict[str, Value]
    load: Callable[[], Submission]
    """Builds the implementation; `impl` calls it once."""
    self_tuning: bool = False
    """An AlgoPerf file with no search space: AlgoPerf's self-tuning ruleset only."""
    checkpoint_classes: tuple[type, ...] = ()
    """The classes besides tensors and plain values that its checkpoints may hold."""

    @cached_property
    def impl(self) -> Submission:
        """The implementation, imported on first use (`prepare_job` asks for it, so that a file
        that fails to import is one line before anything runs)."""
        return self.load()

    def point_for(self, trial: int) -> dict[str, Value]:
        """The hyperparameters of trial `trial` (0-based) when none are given: point `trial` of a
        list-form space (AlgoPerf's order), else the config's `default`, else (a file with an
        object-form space and no default) trial `trial`'s scrambled-Halton point of study 0."""
        points = self.search_space.points
        if points is not None:
            if trial >= len(points):
                raise PacerUserError(f"trial={trial} but the search space {self.search_space.source} lists {len(points)} points (trials 0-{len(points) - 1})")
            return dict(points[trial])
        if self.default or not self.search_space.params:
            return dict(self.default)
        return trial_point(self.search_space, seed=0, study=0, trial=trial)


def submission_names() -> list[str]:
    """Every submission: the stems of configs/submission/*.yaml (but `_template`-like ones)."""
    return sorted(p.stem for p in (CONFIG_DIR / "submission").glob("*.yaml") if not p.stem.startswith("_"))


def check_submission_names(names: Sequence[str]) -> None:
    """Raise `PacerUserError` naming every one of `names` that is not a submission, and the valid ones."""
    valid = submission_names()
    if unknown := sorted(set(names) - set(valid)):
        raise PacerUserError(f"unknown submission(s) {', '.join(unknown)} (valid: {', '.join(valid)})")


def is_submission_file(value: str) -> bool:
    """True when a `submission=` value names a Python file rather than a config."""
    return value.endswith(".py")


def file_submission_config(path: str | Path) -> dict[str, object]:
    """The submission config of an AlgoPerf submission file given on the command line: named
    after its folder when the file is `submission.py` (AlgoPerf's layout), else after the file.

    Raises `PacerUserError` when there is no such file."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise PacerUserError(f"submission file {path}: no such file")
    name = file.parent.name if file.stem == "submission" else file.stem
    return {"name": name, "file": str(file), "format": "algoperf"}


def load_submission(cfg: Mapping[str, object]) -> LoadedSubmission:
    """Check a submission config and load its implementation (an AlgoPerf file: when first
    used); raise `PacerUserError` naming the file and key."""
    name = str(cfg.get("name", "?"))
    where = str(cfg["file"]) if "file" in cfg else f"configs/submission/{name}.yaml"
    if sum(key in cfg for key in ("module", "optimizer", "file")) != 1:
        raise PacerUserError(f"{where}: needs exactly one of `module:` (a Python module with AlgoPerf's submission functions), `optimizer:` (a config-only submission) or `file:` (an AlgoPerf submission file)")
    if str(cfg.get("format", "pacer")) not in FORMATS:
        raise PacerUserError(f"{where}: format: {cfg['format']!r} is not one of {', '.join(FORMATS)}")
    classes = _checkpoint_classes(cfg.get("checkpoint_classes") or [], where)
    if "file" in cfg:
        return _load_file_submission(name, Path(str(cfg["file"])), cfg, classes)
    space = _load_search_space(cfg.get("search_space"), where)
    default = dict(cfg.get("default") or {})
    space.check(default, f"{where} default")
    if "module" in cfg:
        module = _import_module(str(cfg["module"]), where)
        return LoadedSubmission(name, space, default, lambda: module, checkpoint_classes=classes)
    built = build_config_submission(cfg, space, default, where)
    return LoadedSubmission(name, space, default, lambda: built, checkpoint_classes=classes)


def _checkpoint_classes(targets: object, where: str) -> tuple[type, ...]:
    """The classes that `checkpoint_classes:` names.

    Raises:
        PacerUserError: naming `where` and the entry, when it is not a list of importable classes.
    """
    if not isinstance(targets, Sequence) or isinstance(targets, str):
        raise PacerUserError(f"{where}: checkpoint_classes: expected a list of dotted class paths (module.Class)")
    classes = []
    for target in targets:
        found = import_name(str(target), f"{where}: checkpoint_classes")
        if not isinstance(found, type):
            raise PacerUserError(f"{where}: checkpoint_classes: {target} is not a class")
        classes.append(found)
    return tuple(classes)


def _load_file_submission(name: str, file: Path, cfg: Mapping[str, object], classes: tuple[type, ...]) -> LoadedSubmission:
    file = file if file.is_absolute() else SUBMISSIONS_DIR / file
    source = _check_submission_file(file)
    spec = cfg.get("search_space")
    if isinstance(spec, str) or spec is None:
        path = file.parent / (spec or ALGOPERF_SEARCH_SPACE)
        self_tuning = not spec and not path.exists()
        space = SearchSpace({}, f"{file} (no {ALGOPERF_SEARCH_SPACE}: self-tuning)") if self_tuning else SearchSpace.from_file(path)
    else:
        self_tuning, space = False, SearchSpace.from_mapping(spec, str(file))
    default = dict(cfg.get("default") or {})
    space.check(default, f"{file} default")
    return LoadedSubmission(name, space, default, lambda: _import_file(file, source), self_tuning, classes)


def _check_submission_file(file: Path) -> str:
    """The file's source, once it is known to parse and to bind AlgoPerf's required functions."""
    try:
        source = file.read_text(encoding="utf-8")
        tree = ast.parse(source, str(file))
    except OSError as e:
        raise PacerUserError(f"submission file {file}: cannot read ({e.strerror})") from None
    except (SyntaxError, ValueError) as e:
        raise PacerUserError(f"submission file {file}: not valid Python ({e})") from None
    if missing := [f for f in REQUIRED_FUNCTIONS if f not in _top_level_names(tree)]:
        raise PacerUserError(f"submission file {file}: not an AlgoPerf submission: no top-level {', '.join(missing)} (expected {', '.join(REQUIRED_FUNCTIONS)})")
    return source


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _import_file(file: Path, source: str) -> Submission:
    """Import an AlgoPerf submission file as it is (its folder on `sys.path` for its own helper
    modules); anything its import raises is one PacerUserError naming the file and line."""
    algoperf_api.install_for(source)
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    module_name = f"pacer_algoperf_submission_{abs(hash(str(file)))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None  # a .py file that exists always has one
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - an AlgoPerf file's import may raise anything
        del sys.modules[module_name]
        raise PacerUserError(f"submission file {file}: importing it raised {type(e).__name__}: {e} ({raised_at(e)})") from None
    return module


def _import_module(module_name: str, where: str) -> Submission:
    """Import a config's `module:`; anything its import raises is one line naming the file and line."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PacerUserError(f"{where}: cannot import module {module_name!r} ({e})") from None
    except SyntaxError as e:
        raise PacerUserError(f"{where}: module {module_name} is not valid Python: {e.msg} ({e.filename}, line {e.lineno})") from None
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything at import
        raise PacerUserError(f"{where}: importing module {module_name} raised {type(e).__name__}: {e} ({raised_at(e)})") from None
    missing = [f for f in REQUIRED_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise PacerUserError(f"{where}: module {module_name} lacks submission function(s) {', '.join(missing)}")
    return module


def raised_at(error: BaseException) -> str:
    """Where `error` was raised: "FILE, line N" of the innermost frame."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{frame.filename}, line {frame.lineno}"


def _load_search_space(spec: object, where: str) -> SearchSpace:
    if spec is None:
        raise PacerUserError(f"{where}: needs `search_space:` (a JSON file or an inline mapping)")
    if isinstance(spec, str):
        path = Path(spec) if Path(spec).is_absolute() else SUBMISSIONS_DIR / spec
        return SearchSpace.from_file(path)
    return SearchSpace.from_mapping(spec, where)
