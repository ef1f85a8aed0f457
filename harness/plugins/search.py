"""Quasi-random points of a search space: scrambled Halton (SciPy's `qmc`), seeded.

Point k of a study depends only on (seed, study, k): the Halton sequence is extensible, so
the first k points do not change when more trials are asked for, and every shard or rerun
of trial k gets the same point. Different studies get differently scrambled sequences.
(AlgoPerf shuffles its points with an unseeded global RNG; this fixes that.)"""

from __future__ import annotations

import math

from scipy.stats import qmc

from harness.core import rng as rnglib
from harness.plugins.hparams import FeasiblePoints, Range, SearchSpace, Value


def study_points(space: SearchSpace, num_trials: int, seed: int, study: int) -> list[dict[str, Value]]:
    """The first `num_trials` points of study `study` under experiment seed `seed`."""
    names = space.names()
    sampler = qmc.Halton(d=max(len(names), 1), scramble=True, seed=rnglib.from_strings("halton", seed, study))
    unit = sampler.random(num_trials)
    return [{name: _scale(space.params[name], float(u[i])) for i, name in enumerate(names)} for u in unit]


def trial_point(space: SearchSpace, seed: int, study: int, trial: int) -> dict[str, Value]:
    """Point `trial` (0-based) of study `study`: the same wherever and whenever it is asked for."""
    return study_points(space, trial + 1, seed, study)[trial]


def _scale(param: Range | FeasiblePoints, u: float) -> Value:
    if isinstance(param, FeasiblePoints):
        return param.points[min(int(u * len(param.points)), len(param.points) - 1)]
    if param.scaling == "log":
        return math.exp(math.log(param.min) + u * (math.log(param.max) - math.log(param.min)))
    return param.min + u * (param.max - param.min)
