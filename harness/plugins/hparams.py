"""Search spaces in AlgoPerf's JSON format, and the checked hyperparameter point of a run.

A search space is one of AlgoPerf's two forms:

* an object mapping each name to `{"min": a, "max": b, "scaling": "log"|"linear"}` or
  `{"feasible_points": [...]}`: a point is valid when it has exactly the space's names and
  every value lies in its range or among its feasible points;
* a list of concrete points (every external-tuning leaderboard entry uses it): trial k of a
  study is point k, in order, as AlgoPerf runs them (`SearchSpace.points`). Each name's values
  across the list are its feasible points, so overrides are checked against them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import PacerUserError
from harness.core.spec import Hyperparameters

Value = float | int | str | bool
SCALINGS = ("linear", "log")


@dataclass(frozen=True)
class Range:
    min: float
    max: float
    scaling: str

    def contains(self, value: Value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.min <= value <= self.max


@dataclass(frozen=True)
class FeasiblePoints:
    points: tuple[Value, ...]

    def contains(self, value: Value) -> bool:
        return any(value == p and type(value) is type(p) or _close(value, p) for p in self.points)


def _distinct(values: Iterable[Value]) -> tuple[Value, ...]:
    """`values` without repeats, in first-seen order (values may be unhashable JSON)."""
    seen: list[Value] = []
    for value in values:
        if not any(value == s and type(value) is type(s) for s in seen):
            seen.append(value)
    return tuple(seen)


def _close(a: Value, b: Value) -> bool:
    """Numerically equal numbers (a bool is not a number here: `false` is not 0.0)."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float) or not isinstance(b, int | float):
        return False
    return math.isclose(a, b, rel_tol=1e-12)


Parameter = Range | FeasiblePoints


@dataclass(frozen=True)
class SearchSpace:
    params: dict[str, Parameter]
    source: str
    """Where the space came from (a file path or a config name), for error messages."""
    points: tuple[dict[str, Value], ...] | None = None
    """The list form's points, in order (trial k of a study is point k); None for the object form."""

    @classmethod
    def from_file(cls, path: Path) -> SearchSpace:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as e:
            raise PacerUserError(f"search space {path}: cannot read ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise PacerUserError(f"search space {path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: object, source: str) -> SearchSpace:
        """Parse either form (object or list of points); raise `PacerUserError` naming `source`."""
        if isinstance(data, list):
            return cls.from_points(data, source)
        if not isinstance(data, Mapping):
            raise PacerUserError(f"search space {source}: expected an object of hyperparameters or a list of points (AlgoPerf's two forms), got {type(data).__name__}")
        return cls({str(name): _parse_parameter(spec, f"{source}: {name}") for name, spec in data.items()}, source)

    @classmethod
    def from_points(cls, data: list[object], source: str) -> SearchSpace:
        """The list form: every entry an object of name -> value, all with the same names."""
        if not data or not all(isinstance(p, Mapping) and p for p in data):
            raise PacerUserError(f"search space {source}: a list-form search space must be a non-empty list of objects of hyperparameter values")
        points = tuple({str(k): v for k, v in p.items()} for p in data if isinstance(p, Mapping))
        names = set(points[0])
        for index, point in enumerate(points):
            if set(point) != names:
                raise PacerUserError(f"search space {source}: point {index} has names {', '.join(sorted(point))}, point 0 has {', '.join(sorted(names))}")
        params: dict[str, Parameter] = {name: FeasiblePoints(_distinct(p[name] for p in points)) for name in sorted(names)}
        return cls(params, source, points)

    def names(self) -> list[str]:
        return sorted(self.params)

    def check(self, point: Mapping[str, Value], what: str) -> None:
        """Raise a one-line error for a name not in the space or a value outside it."""
        for name, value in point.items():
            if name not in self.params:
                raise PacerUserError(f"{what}: unknown hyperparameter {name!r} for search space {self.source} (valid: {', '.join(self.names())})")
            if isinstance(self.params[name], Range) and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise PacerUserError(f"{what}: {name}={value!r} is not a number (its search space is {_describe(self.params[name])} in {self.source})")
            if not self.params[name].contains(value):
                raise PacerUserError(f"{what}: {name}={value!r} is outside its search space {_describe(self.params[name])} in {self.source}")


def _parse_parameter(spec: object, where: str) -> Parameter:
    if not isinstance(spec, Mapping):
        raise PacerUserError(f"search space {where}: expected an object with min/max/scaling or feasible_points")
    keys = set(spec)
    if keys == {"feasible_points"}:
        points = spec["feasible_points"]
        if not isinstance(points, list) or not points:
            raise PacerUserError(f"search space {where}: feasible_points must be a non-empty list")
        return FeasiblePoints(tuple(points))
    if keys == {"min", "max", "scaling"} or keys == {"min", "max"}:
        lo, hi, scaling = spec["min"], spec["max"], spec.get("scaling", "linear")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:
            raise PacerUserError(f"search space {where}: min and max must be numbers with min <= max")
        if scaling not in SCALINGS:
            raise PacerUserError(f"search space {where}: scaling {scaling!r} is not one of {', '.join(SCALINGS)}")
        if scaling == "log" and lo <= 0:
            raise PacerUserError(f"search space {where}: log scaling needs min > 0")
        return Range(float(lo), float(hi), scaling)
    unknown = sorted(keys - {"min", "max", "scaling", "feasible_points"})
    detail = f"unknown key(s) {', '.join(unknown)}" if unknown else f"incomplete keys {', '.join(sorted(keys))}"
    raise PacerUserError(f"search space {where}: {detail} (expected min/max/scaling or feasible_points)")


def _describe(param: Parameter) -> str:
    if isinstance(param, Range):
        return f"[{param.min:g}, {param.max:g}] ({param.scaling})"
    return f"{{{', '.join(map(repr, param.points))}}}"


def resolve(space: SearchSpace, default: Mapping[str, Value], overrides: Mapping[str, Value], what: str) -> Hyperparameters:
    """The run's hyperparameters: the default point with `overrides` applied, all checked."""
    space.check(overrides, what)
    point = {**default, **overrides}
    space.check(point, what)
    missing = sorted(set(space.params) - set(point))
    if missing:
        raise PacerUserError(f"{what}: no value for hyperparameter(s) {', '.join(missing)} of {space.source}")
    return Hyperparameters(point)
