"""How contended the machine was during a run, and whether to trust its clock.

The normalized clock (`harness.core.timer`) corrects for a slower or moderately busy machine, but
not for an oversubscribed one: when more threads want to run than there are cores, the
run waits in the scheduler's queue and memory-bound and compute-bound work slow down by
different factors, so the reference computation no longer measures the training's
slowdown. Three readings, each cheap and available without privileges on Linux:

* the run queue wait: the share of time this process's threads were ready to run but
  waiting for a CPU (`/proc/self/task/*/schedstat`: on-CPU and run-queue nanoseconds);
* the load average per core at the start and the end (`os.getloadavg`);
* the spread of the reference probes (p90 / p10 of their durations).

A run is flagged `contended` when its run queue wait exceeds `MAX_RUN_QUEUE_WAIT`. The
threshold comes from `benchmarks/clock_portability.py` on the 2-core development VM (see
docs/cpu-suite.md). The probes' spread is recorded but flags nothing: there it was 1.4-2.0
(p90 / p10) on a quiet machine and on an oversubscribed one alike, while the queue wait was
under 1% and about 50%."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MAX_RUN_QUEUE_WAIT = 0.25
"""Share of the run's runnable time spent waiting for a CPU above which it is contended."""


@dataclass(frozen=True)
class SchedSnapshot:
    on_cpu_ns: int
    waiting_ns: int
    load_average: float


def snapshot() -> SchedSnapshot:
    """This process's accumulated on-CPU and run-queue time, and the 1-minute load average."""
    on_cpu = waiting = 0
    for stat in Path("/proc/self/task").glob("*/schedstat"):
        try:
            fields = stat.read_text().split()
        except OSError:  # a thread that ended between the listing and the read
            continue
        on_cpu, waiting = on_cpu + int(fields[0]), waiting + int(fields[1])
    return SchedSnapshot(on_cpu, waiting, os.getloadavg()[0])


def assess(start: SchedSnapshot, end: SchedSnapshot, probe_summary: Mapping[str, float] | None) -> dict[str, object]:
    """The run record's `contention` block: the readings, and `contended` with its reasons."""
    on_cpu, waiting = end.on_cpu_ns - start.on_cpu_ns, end.waiting_ns - start.waiting_ns
    wait_fraction = waiting / (on_cpu + waiting) if on_cpu + waiting > 0 else 0.0
    spread = None if probe_summary is None else float(probe_summary["spread"])
    reasons = []
    if wait_fraction > MAX_RUN_QUEUE_WAIT:
        reasons.append(f"waited for a CPU {wait_fraction:.0%} of its runnable time (limit {MAX_RUN_QUEUE_WAIT:.0%})")
    return {
        "contended": bool(reasons),
        "reasons": reasons,
        "run_queue_wait_fraction": round(wait_fraction, 4),
        "load_average": [round(start.load_average, 2), round(end.load_average, 2)],
        "cpu_count": os.cpu_count(),
        "reference_spread": None if spread is None else round(spread, 3),
    }
