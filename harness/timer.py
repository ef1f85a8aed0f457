"""The clock: accumulated time per named phase, read after a device synchronisation.

Phases are `submission` (the timed part), `eval` and `logging` (untimed by the rules but
recorded). Only the runner opens phases."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

PHASES = ("submission", "eval", "logging")


class Clock:
    def __init__(self, device: torch.device, totals: dict[str, float] | None = None):
        self._sync = device.type == "cuda"
        self.totals = {phase: 0.0 for phase in PHASES} | (totals or {})
        self.started = self.now()

    def now(self) -> float:
        """Wall time in seconds, after waiting for queued device work."""
        if self._sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.totals[name] += self.now() - start

    @property
    def submission_time(self) -> float:
        return self.totals["submission"]
