"""Search spaces in AlgoPerf's format and checked hyperparameter points."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import PacerUserError
from harness.plugins.hparams import SearchSpace, resolve
from harness.plugins.search import study_points, trial_point

SPACE = {"learning_rate": {"min": 1e-4, "max": 1e-1, "scaling": "log"}, "beta2": {"feasible_points": [0.99, 0.999]}}


def test_resolve_applies_overrides_and_checks_them():
    space = SearchSpace.from_mapping(SPACE, "test")
    hp = resolve(space, {"learning_rate": 1e-3, "beta2": 0.999}, {"learning_rate": 2e-3}, "x")
    assert hp.learning_rate == 2e-3 and hp["beta2"] == 0.999
    with pytest.raises(AttributeError):
        hp.learning_rate = 1.0
    with pytest.raises(PacerUserError, match="outside its search space"):
        resolve(space, {"learning_rate": 1e-3, "beta2": 0.999}, {"beta2": 0.9}, "x")
    with pytest.raises(PacerUserError, match="no value for hyperparameter"):
        resolve(space, {"learning_rate": 1e-3}, {}, "x")


@pytest.mark.parametrize(("entry", "message"), [
    ({"min": 1, "max": 2, "scalling": "log"}, "unknown key(s) scalling"),
    ({"min": 2, "max": 1}, "min <= max"),
    ({"min": 0, "max": 1, "scaling": "log"}, "log scaling needs min > 0"),
    ({"min": 1, "max": 2, "scaling": "cubic"}, "scaling 'cubic'"),
    ({"feasible_points": []}, "non-empty list"),
])
def test_search_space_typos_name_the_file_and_key(tmp_path, entry, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": entry}))
    with pytest.raises(PacerUserError) as e:
        SearchSpace.from_file(path)
    assert str(path) in str(e.value) and "learning_rate" in str(e.value) and message in str(e.value)


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{\n "learning_rate": {"min": 1,,}\n}')
    with pytest.raises(PacerUserError, match=r"invalid JSON at line 2"):
        SearchSpace.from_file(path)


def test_halton_points_are_in_the_space_and_sharding_safe():
    space = SearchSpace.from_mapping(SPACE, "test")
    points = study_points(space, 8, seed=3, study=0)
    for p in points:
        space.check(p, "point")
    assert study_points(space, 3, seed=3, study=0) == points[:3]
    assert trial_point(space, seed=3, study=0, trial=5) == points[5]
    assert study_points(space, 8, seed=3, study=1) != points
    assert len({round(p["learning_rate"], 12) for p in points}) == 8
