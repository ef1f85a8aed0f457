"""The clock: accumulated time per named phase, read after a device synchronisation.

Phases are `submission` (the timed part), `eval` and `logging` (untimed by the rules but
recorded). Only the runner opens phases.

With several processes (DDP) every process keeps its own totals; what the runner reads
(`totals`, `submission_time`, `since`) is the maximum over processes, so that the clock is
the slowest rank's and every rank takes the same decisions. Every rank must therefore read
the clock at the same points, which the runner does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from harness import distributed

PHASES = ("submission", "eval", "logging")


class Clock:
    def __init__(self, device: torch.device, totals: dict[str, float] | None = None):
        self._device = device
        self._sync = device.type == "cuda"
        self._reduce = distributed.active()  # read once: the clock is read every step
        self._totals = {phase: 0.0 for phase in PHASES} | (totals or {})
        self.started = self.now()

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
            self._totals[name] += self.now() - start

    @property
    def totals(self) -> dict[str, float]:
        """Accumulated seconds per phase (the slowest process's)."""
        return dict(zip(PHASES, self._slowest([self._totals[p] for p in PHASES]), strict=True))

    def restore(self, totals: dict[str, float]) -> None:
        """Continue from totals saved by a checkpoint (this process's own)."""
        self._totals.update(totals)

    @property
    def submission_time(self) -> float:
        return self._slowest([self._totals["submission"]])[0]

    def since(self, start: float) -> float:
        """Seconds from `start` (a `now()` reading) until now (the slowest process's)."""
        return self._slowest([self.now() - start])[0]

    def _slowest(self, values: list[float]) -> list[float]:
        if not self._reduce:
            return values
        reduced = torch.tensor(values, dtype=torch.float64, device=self._device)
        return distributed.all_reduce(reduced, op="max").tolist()
