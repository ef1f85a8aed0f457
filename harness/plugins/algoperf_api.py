"""The names an unmodified AlgoPerf PyTorch submission imports, served by Pacer.

AlgoPerf submission files begin with `from algoperf import spec` and
`from algoperf.pytorch_utils import pytorch_setup` (v0.5 files: `algorithmic_efficiency`,
the package's earlier name), and most log with `from absl import logging`. Pacer installs
none of those packages. `install_for(path)` reads which of them a submission file imports
and registers this module's stand-ins in `sys.modules` for exactly those that no real
installation provides, so a real `algoperf` or `absl` on the path is always the one used.

The stand-ins (names from `algoperf/spec.py` and `algoperf/pytorch_utils.py` of
mlcommons/algorithmic-efficiency):

* `<root>.spec`: every name of `harness.core.spec` (the same objects, so that
  `spec.ForwardPassMode.TRAIN` is what Pacer's workloads compare against) plus AlgoPerf's
  type aliases `RandomState`, `ParameterTypeTree`, `ParameterShapeTree`, `ParameterKey`,
  `UpdateReturn`, `ModelInitState`, `Shape`, `ShapeTuple`, `Timing`, `Steps` and the
  function types `InitOptimizerFn`, `UpdateParamsFn`, `PrepareForEvalFn`, `DataSelectionFn`;
* `<root>.pytorch_utils.pytorch_setup()`: `(use_ddp, rank, device, n_gpus)` of this process;
* `absl.logging`: `debug`, `info`, `warning`, `error`, `exception`, `fatal`, `log`,
  `vlog`, forwarded to the standard `logging` logger `absl`.
"""

from __future__ import annotations

import ast
import importlib.util
import logging as std_logging
import os
import sys
import types
from collections.abc import Callable, Mapping

import torch

from harness.core import spec as pacer_spec

ALGOPERF_ROOTS = ("algoperf", "algorithmic_efficiency")
"""AlgoPerf's package name since v0.6, and its name in v0.5 submission files."""
ABSL_ROOT = "absl"


class ShapeTuple:
    """AlgoPerf's wrapper of a parameter shape (`shape_tuple`), kept for files that build one."""

    def __init__(self, shape_tuple: tuple[int, ...]):
        self.shape_tuple = shape_tuple

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

    def __hash__(self) -> int:
        return hash(self.shape_tuple)


ParameterKey = str
ParameterTypeTree = dict[ParameterKey, pacer_spec.ParameterType]
ParameterShapeTree = dict[ParameterKey, torch.Size]
Shape = tuple[int, ...] | ShapeTuple
RandomState = pacer_spec.Rng
UpdateReturn = tuple[pacer_spec.OptimizerState, pacer_spec.ParameterContainer, pacer_spec.ModelAuxiliaryState]
ModelInitState = tuple[pacer_spec.ParameterContainer, pacer_spec.ModelAuxiliaryState]
Timing = int
Steps = int
InitOptimizerFn = Callable[..., pacer_spec.OptimizerState]
UpdateParamsFn = Callable[..., UpdateReturn]
PrepareForEvalFn = Callable[..., UpdateReturn]
DataSelectionFn = Callable[..., pacer_spec.Batch]

_SPEC_ALIASES = ("ShapeTuple", "ParameterKey", "ParameterTypeTree", "ParameterShapeTree", "Shape", "RandomState", "UpdateReturn",
                 "ModelInitState", "Timing", "Steps", "InitOptimizerFn", "UpdateParamsFn", "PrepareForEvalFn", "DataSelectionFn")


def pytorch_setup() -> tuple[bool, int, torch.device, int]:
    """AlgoPerf's `pytorch_setup`: (DDP in use, local rank, this rank's device, visible GPUs)."""
    use_ddp = "LOCAL_RANK" in os.environ
    rank = int(os.environ["LOCAL_RANK"]) if use_ddp else 0
    device = torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")
    return use_ddp, rank, device, torch.cuda.device_count()


def _spec_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "Pacer's stand-in for AlgoPerf's spec module (harness.plugins.algoperf_api).")
    public = {k: v for k, v in vars(pacer_spec).items() if not k.startswith("_") and k != "annotations"}
    module.__dict__.update(public)
    module.__dict__.update({alias: globals()[alias] for alias in _SPEC_ALIASES})
    return module


def _algoperf_modules(root: str) -> dict[str, types.ModuleType]:
    package = types.ModuleType(root, "Pacer's stand-in for AlgoPerf (harness.plugins.algoperf_api).")
    package.__path__ = []  # a package, so that `import root.spec` resolves through sys.modules
    spec_module = _spec_module(f"{root}.spec")
    utils = types.ModuleType(f"{root}.pytorch_utils", "Pacer's stand-in for AlgoPerf's pytorch_utils.")
    utils.pytorch_setup = pytorch_setup  # type: ignore[attr-defined]
    package.spec, package.pytorch_utils = spec_module, utils  # type: ignore[attr-defined]
    return {root: package, spec_module.__name__: spec_module, utils.__name__: utils}


def _absl_modules() -> dict[str, types.ModuleType]:
    logger = std_logging.getLogger("absl")
    logging_module = types.ModuleType("absl.logging", "Pacer's stand-in for absl.logging: the standard logger `absl`.")
    levels = {"DEBUG": std_logging.DEBUG, "INFO": std_logging.INFO, "WARNING": std_logging.WARNING, "ERROR": std_logging.ERROR, "FATAL": std_logging.CRITICAL}
    logging_module.__dict__.update(levels)
    logging_module.__dict__.update({
        "debug": logger.debug, "info": logger.info, "warning": logger.warning, "warn": logger.warning, "error": logger.error,
        "exception": logger.exception, "fatal": logger.critical, "log": logger.log, "vlog": logger.log,
        "set_verbosity": logger.setLevel, "get_verbosity": logger.getEffectiveLevel,
    })
    package = types.ModuleType(ABSL_ROOT, "Pacer's stand-in for absl (logging only).")
    package.__path__ = []
    package.logging = logging_module  # type: ignore[attr-defined]
    return {ABSL_ROOT: package, "absl.logging": logging_module}


STAND_INS: Mapping[str, Callable[[], dict[str, types.ModuleType]]] = {
    **{root: (lambda root=root: _algoperf_modules(root)) for root in ALGOPERF_ROOTS},
    ABSL_ROOT: _absl_modules,
}
"""Top-level package -> a builder of its stand-in modules (name -> module)."""


def imported_roots(source: str) -> set[str]:
    """Top-level package names that Python source imports (`import a.b`, `from a.b import c`).

    Raises `SyntaxError` for source that does not parse."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def install_for(source: str) -> list[str]:
    """Register stand-ins for the AlgoPerf-related packages `source` imports and nothing real
    provides; return their top-level names (empty when the file needs none)."""
    installed = []
    for root in sorted(imported_roots(source) & set(STAND_INS)):
        if root in sys.modules or importlib.util.find_spec(root) is not None:
            continue  # a real installation (or an earlier stand-in) is already there
        sys.modules.update(STAND_INS[root]())
        installed.append(root)
    return installed

