"""Preemption: stop at a step boundary on SIGUSR2/SIGTERM, save the whole run, restore it later.

Slurm sends SIGUSR2 (through submitit's `--signal`) before a time limit and SIGTERM on
preemption. A signal only sets a flag; the runner reads it between steps, so a checkpoint is
never taken in the middle of an update. Saving and restoring are untimed. Under DDP the
processes agree at each step boundary, so all of them stop at the same step.

A run can be killed without warning too (SIGKILL, a node failure): `PeriodicCheckpoints` saves
it every `checkpoint_every_sec` of wall time, so that at most that much work is redone. A
checkpoint is written to a temporary file and renamed over the previous one, so a kill during
a write leaves the previous checkpoint intact.

A checkpoint holds everything the rest of the run depends on: the parameters, the optimizer
state (values with `state_dict`, such as optimizers and LR schedulers, through it), the model
state, every RNG state, the input queue's position, the accumulated clock totals, the eval
history and outcome so far (step, examples seen, times to target) and the preemption count.
The runner owns that state (`Runner.state_dict` / `load_state_dict`); this module only
handles the file and the signals. Restored in the runner's setup after everything is built,
it continues the run exactly: on CPU in deterministic mode the eval sequence is the one of an
uninterrupted run.

A checkpoint holds tensors and plain values only and is read with `weights_only=True`: a run
folder may come from anyone, and resuming from it must never run code that a pickle names.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from harness.core import distributed
from harness.core.errors import PacerUserError
from harness.core.store import CHECKPOINT_FILE, atomic_write, writing_record

if TYPE_CHECKING:
    from harness.core.runner import Runner

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
FORMAT_VERSION = 2  # 2: RNG states and deques as plain values
CHECKPOINT_KEYS = frozenset({"version", "params", "model_state", "optimizer_state", "rng", "input_queue", "clock", "eval_history", "outcome", "train_state", "preemptions"})
_WAY_OUT = "delete it to start the run over with resume=true, or pass overwrite=true"

SignalHandler = Callable[[int, types.FrameType | None], object]


@contextlib.contextmanager
def stop_signals_handled(handler: SignalHandler) -> Iterator[None]:
    """Let `handler` take SIGUSR2 and SIGTERM for the duration, then put back the previous
    handlers (e.g. submitit's, which requeue the job)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python delivers signals to the main thread only
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, handler_before in previous.items():
            signal.signal(s, handler_before)


class StopFlag:
    """True once SIGUSR2 or SIGTERM arrived while `installed()`; the runner polls it."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        """Under DDP a collective: true on every process once any of them got a signal."""
        return distributed.any_rank(self.signum is not None)

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch the stop signals for the duration (see `stop_signals_handled`)."""
        with stop_signals_handled(self._handle):
            yield self


class PeriodicCheckpoints:
    """Saves the run at the first step boundary after every `every_sec` seconds of wall time
    (untimed: between steps, outside the clock's phases), so that a run killed without warning
    resumes from at most that long ago. Under DDP the processes agree on when (rank 0 writes,
    the others wait at a barrier), so no process's clock counts the write."""

    def __init__(self, run_dir: Path, every_sec: float | None, preemptions: int):
        self.run_dir, self.every_sec, self.preemptions = Path(run_dir), every_sec, preemptions
        self.last = time.monotonic()

    def __call__(self, runner: Runner) -> None:
        if not self.every_sec or not distributed.any_rank(time.monotonic() - self.last >= self.every_sec):
            return
        if distributed.is_main():
            save(runner, self.run_dir, self.preemptions)
        distributed.barrier()
        self.last = time.monotonic()


def path_in(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_FILE


def save(runner: Runner, run_dir: Path, preemptions: int) -> Path:
    """Write the runner's `state_dict()` and the preemption count to `<run_dir>/checkpoint.pt`
    atomically: the previous checkpoint stays until the new one is complete on disk."""
    path = path_in(run_dir)
    with writing_record(path):
        torch_save_atomically({"version": FORMAT_VERSION, **runner.state_dict(), "preemptions": preemptions}, path)
    for stale in path.parent.glob(f".{path.name}.tmp*"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    return path


def torch_save_atomically(obj: object, path: Path, *, durable: bool = True) -> None:
    """`torch.save(obj)` into `path` through `store.atomic_write` (readers see the old or the new
    file). Serialized in memory first: torch reports a file write the disk refuses part-way as a
    RuntimeError, where the OSError it is lets the caller say "disk full".

    Raises OSError when the file system refuses; `path` is then unchanged."""
    payload = io.BytesIO()
    torch.save(obj, payload)
    atomic_write(path, payload.getvalue(), durable=durable)


def load(run_dir: Path, allowed_classes: Sequence[type] = ()) -> dict[str, object] | None:
    """The checkpoint of a run folder, or None when there is none. Besides tensors and plain
    values it may hold instances of `allowed_classes` only (what the submission's optimizer
    keeps in its state, e.g. ScalableShampoo's preconditioners).

    Raises:
        PacerUserError: the file is damaged, is not a Pacer checkpoint, or names anything else
            (which is neither imported nor called).
    """
    path = path_in(run_dir)
    if not path.exists():
        return None
    with torch.serialization.safe_globals(list(allowed_classes)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a hostile or torn file can make the unpickler raise anything
            raise PacerUserError(f"cannot resume from {path}: {_refusal(path)}; {_WAY_OUT}") from None
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise PacerUserError(f"cannot resume from {path}: it is not a Pacer checkpoint; {_WAY_OUT}")
    if state["version"] != FORMAT_VERSION:
        return None
    return state


def _refusal(path: Path) -> str:
    """Why `weights_only` loading refused a checkpoint, found without unpickling it."""
    try:
        refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - as in `load`: a damaged file may fail in any way
        refused = []
    if refused:
        return f"it names {', '.join(sorted(refused))}, which a checkpoint may not hold (only tensors, plain values and the submission's checkpoint_classes)"
    return "the file is damaged or not a checkpoint"


def remove(run_dir: Path) -> None:
    path_in(run_dir).unlink(missing_ok=True)
