"""The clock: accumulated time per named phase, read after a device synchronisation.

Phases are `submission` (the timed part), `eval`, `logging` and `reference` (untimed by the
rules but recorded). Only the runner opens phases.

Two kinds of clock, chosen by the workload (`Workload.clock`):

* `wall`: AlgoPerf's rule. Submission time is the wall time spent in the submission phase.
* `normalized`: submission time in *reference seconds*, i.e. seconds on the workload's
  calibration host. A fixed reference computation (`Workload.reference_computation`, a
  forward/backward pass of a separate copy of the model) is timed between training steps on
  the run's own machine, untimed; each stretch of submission wall time between two such
  probes is multiplied by `reference_sec / probe_sec`, with `probe_sec` the mean of the two
  probes around the stretch and `reference_sec` the same computation's time on the
  calibration host (written into the workload config by `pacer calibrate`). A machine twice
  as slow, or slowed twice by other processes, takes twice the wall time and probes twice as
  long: the normalized time stays. Probes take about `PROBE_SHARE` of the submission's time.
  This holds while the run gets its share of the CPU; an oversubscribed machine slows
  memory-bound and compute-bound work differently and is flagged (`harness.core.contention`).

With several processes (DDP) every process keeps its own totals; what the runner reads
(`totals`, `submission_time`, `since`) is the maximum over processes, so that the clock is
the slowest rank's and every rank takes the same decisions. Every rank must therefore read
the clock at the same points, which the runner does. The normalized clock is for one
process (the CPU tier); `harness.experiments.job` refuses it with several devices."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypedDict

import torch

from harness.core import distributed

PHASES = ("submission", "eval", "logging", "reference")
PROBE_SHARE = 0.05
"""Probe once the submission has run 1 / PROBE_SHARE times the last probe's duration."""
PROBE_TARGET_SEC = 0.004
"""A probe repeats the reference computation until it lasts about this long (timer
resolution and scheduler jitter matter less for a longer probe)."""


class ClockState(TypedDict, total=False):
    """What a checkpoint keeps of the clock (checkpoints before the normalized clock hold
    `totals` alone)."""

    totals: dict[str, float]
    normalized: float
    open_raw: float
    last_probe: float | None
    probes: list[float]


@dataclass(frozen=True)
class Reference:
    """The normalized clock's yardstick.

    Attributes:
        compute: one run of the reference computation (must not touch the training state).
        host_sec: its duration on the calibration host, seconds; None during a calibration
            run, which counts raw seconds and records the probe timings instead.
    """

    compute: Callable[[], None]
    host_sec: float | None


class Clock:
    def __init__(self, device: torch.device, reference: Reference | None = None, totals: dict[str, float] | None = None):
        self._device = device
        self._sync = device.type == "cuda"
        self._reduce = distributed.active()  # read once: the clock is read every step
        self._totals = {phase: 0.0 for phase in PHASES} | (totals or {})
        self._reference = reference
        self._repeats = 1
        self._normalized = 0.0  # reference seconds of the stretches closed by a probe
        self._open_raw = 0.0  # submission wall seconds since the last probe
        self._last_probe: float | None = None  # seconds per repeat
        self.probes: list[float] = []
        """Every probe's seconds per reference computation, in order (for the record)."""
        self.started = self.now()

    @property
    def kind(self) -> str:
        return "wall" if self._reference is None else "normalized"

    def now(self) -> float:
        """This process's wall time in seconds, after waiting for queued device work."""
        if self._sync:
            torch.cuda.synchronize(self._device)
        return time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            elapsed = self.now() - start
            self._totals[name] += elapsed
            if name == "submission":
                self._open_raw += elapsed

    @property
    def totals(self) -> dict[str, float]:
        """Accumulated wall seconds per phase (the slowest process's)."""
        return dict(zip(PHASES, self._slowest([self._totals[p] for p in PHASES]), strict=True))

    @property
    def raw_submission_time(self) -> float:
        """Wall seconds in the submission phase (the slowest process's)."""
        return self._slowest([self._totals["submission"]])[0]

    @property
    def submission_time(self) -> float:
        """Submission time in the workload's clock: wall seconds, or reference seconds
        (the stretch since the last probe scaled by that probe)."""
        if self._reference is None:
            return self.raw_submission_time
        return self._normalized + self._open_raw * self._scale(self._last_probe)

    def since(self, start: float) -> float:
        """Seconds from `start` (a `now()` reading) until now (the slowest process's)."""
        return self._slowest([self.now() - start])[0]

    # --- the normalized clock ------------------------------------------------------------

    def start_reference(self) -> None:
        """Warm the reference computation up, size a probe and take the first one (untimed)."""
        if self._reference is None:
            return
        with self.phase("reference"):
            self._reference.compute()  # first call: allocations, kernel selection
            start = self.now()
            self._reference.compute()
            once = max(self.now() - start, 1e-6)
        self._repeats = max(1, round(PROBE_TARGET_SEC / once))
        self.probe()

    def probe_due(self) -> bool:
        return self._reference is not None and self._open_raw * PROBE_SHARE >= self._probe_duration()

    def probe(self) -> None:
        """Time the reference computation (untimed) and close the open stretch with it."""
        if self._reference is None:
            return
        with self.phase("reference"):
            start = self.now()
            for _ in range(self._repeats):
                self._reference.compute()
            seconds = (self.now() - start) / self._repeats
        around = seconds if self._last_probe is None else (self._last_probe + seconds) / 2
        self._normalized += self._open_raw * self._scale(around)
        self._open_raw, self._last_probe = 0.0, seconds
        self.probes.append(seconds)

    def _scale(self, probe_sec: float | None) -> float:
        if self._reference is None or self._reference.host_sec is None or probe_sec is None:
            return 1.0
        return self._reference.host_sec / probe_sec

    def _probe_duration(self) -> float:
        return (self._last_probe or 0.0) * self._repeats

    def probe_summary(self) -> dict[str, float | int] | None:
        """Count, median and spread (p90 / p10) of the probes; None on the wall clock."""
        if self._reference is None or not self.probes:
            return None
        deciles = statistics.quantiles(self.probes, n=10) if len(self.probes) >= 2 else [self.probes[0]] * 9
        return {"count": len(self.probes), "median_sec": statistics.median(self.probes), "repeats": self._repeats,
                "spread": deciles[-1] / deciles[0]}

    # --- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> ClockState:
        """The totals (the slowest process's) and the normalized clock's position (plain types)."""
        return {"totals": self.totals, "normalized": self._normalized, "open_raw": self._open_raw,
                "last_probe": self._last_probe, "probes": list(self.probes)}

    def load_state_dict(self, state: ClockState) -> None:
        """Continue from `state_dict()` (a checkpoint of this process)."""
        self._totals.update(state["totals"])
        self._normalized = state.get("normalized", 0.0)
        self._open_raw = state.get("open_raw", 0.0)
        self.probes = list(state.get("probes", []))
        self._last_probe = state.get("last_probe")

    def _slowest(self, values: list[float]) -> list[float]:
        if not self._reduce:
            return values
        reduced = torch.tensor(values, dtype=torch.float64, device=self._device)
        return distributed.all_reduce(reduced, op="max").tolist()
