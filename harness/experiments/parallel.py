"""Run independent, step-based jobs (tuning trials) in parallel processes on one machine."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item], workers: int) -> list[Result]:
    """`[function(item) for item in items]`, in `workers` processes of one torch thread each
    (so that they don't oversubscribe the cores); in this process when `workers` is 1.

    `function` must be importable by name (a module-level function): the processes are spawned,
    never forked from a process that already holds torch's thread pools. With `workers` > 1 even
    a single item runs in a one-thread worker: callers record the thread count, which can change
    a run's numerics."""
    if workers <= 1 or not items:
        return [function(item) for item in items]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers, len(items)), mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)) as pool:
        return list(pool.map(function, items))


def _start_worker(parent: int) -> None:
    """One torch thread, and (Linux) SIGKILL when the parent dies: a killed `pacer calibrate`
    must not leave orphaned workers training on, which would load the machine that its next
    calibration times."""
    torch.set_num_threads(1)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


PR_SET_PDEATHSIG = 1
"""Linux prctl(2): the signal a process gets when its parent thread exits."""
