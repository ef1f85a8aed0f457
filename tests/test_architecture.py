"""The house drawn from the imports (docs/architecture.md): `harness/core` at the bottom,
`plugins` and `experiments` above it, `scoring` beside them, the CLI on top; no cycles; the
workload and submission packages depend on `harness`, never the other way round. Every import
counts, including those inside functions (a lazy import still ties the modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "harness"
MAY_IMPORT = {
    "core": {"core"},
    "plugins": {"core", "plugins"},
    "experiments": {"core", "plugins", "experiments"},
    "scoring": {"core", "scoring"},
}
"""Wing -> the wings its modules may import (the harness package's own `__init__` is open to all)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, as dotted names (`from harness.core import rng` gives
    `harness.core.rng` when that is a module, else `harness.core`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _is_module(candidate) else node.module)
    return found


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in HARNESS.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in MAY_IMPORT else None


def test_every_harness_module_lives_in_a_wing_or_is_the_cli():
    top = {_module_name(p) for p in HARNESS.glob("*.py")}
    assert top == {"harness", "harness.__main__", "harness.cli"}, top


@pytest.mark.parametrize("wing", sorted(MAY_IMPORT))
def test_a_wing_imports_only_the_wings_below_it(wing):
    upward = [(module, imported) for module, imports in _graph().items() if _wing(module) == wing
              for imported in imports if imported != "harness" and _wing(imported) not in MAY_IMPORT[wing]]
    assert not upward, f"{wing} imports outside {sorted(MAY_IMPORT[wing])}: {upward}"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(imported):], imported]))
            if imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_harness_never_imports_a_workload_or_a_submission():
    """They are found by convention (configs name their classes and files), so a new one
    needs no change to the harness."""
    offenders = {_module_name(p): sorted(m for m in _imports(p) if m.split(".")[0] in ("workloads", "submissions")) for p in HARNESS.rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_workloads_and_submissions_depend_on_the_harness_only():
    """A workload does not import a submission, nor a submission a workload."""
    for package, other in (("workloads", "submissions"), ("submissions", "workloads")):
        for path in (REPO / package).rglob("*.py"):
            assert not [m for m in _imports(path) if m.split(".")[0] == other], path
