"""Seeds as plain integers, derived deterministically (numpy's SeedSequence), so that one run
seed fixes model init, data order and dropout, and any part can be re-derived on resume."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from harness.core.spec import Rng


def split(rng: Rng, n: int) -> list[Rng]:
    """`n` independent child seeds of `rng`."""
    children = np.random.SeedSequence(rng).spawn(n)
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in children]


MASK64 = (1 << 64) - 1


def fold_in(rng: Rng, data: int) -> Rng:
    """A seed derived from `rng` and an integer (e.g. the step number).

    SplitMix64's finaliser rather than a SeedSequence: the runner calls this every step, and
    this costs a microsecond instead of several."""
    z = (rng ^ ((data & MASK64) * 0x9E3779B97F4A7C15)) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return (z ^ (z >> 31)) >> 1


def from_strings(*parts: str | int) -> Rng:
    """A seed derived from names and numbers (e.g. experiment seed, workload, study, trial)."""
    # Whole strings, not their first 8 bytes: `mnist1d_mlp` and `mnist1d_mlp_gelu` must differ.
    words = [int.from_bytes(str(p).encode(), "little") for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_everything(rng: Rng) -> None:
    """Seed the global RNGs that models and submissions may use implicitly (dropout)."""
    random.seed(rng)
    np.random.seed(rng % (1 << 32))
    torch.manual_seed(rng)


@contextlib.contextmanager
def isolated_streams(rng: Rng, device: torch.device) -> Iterator[None]:
    """Run code that must leave the training's random streams as they were: the global torch
    (CPU and `device`), numpy and Python generators are seeded from `rng` on entry and restored
    on exit. The runner puts everything that runs at eval time under it (the submission's
    `prepare_for_eval`, the workload's eval), so that the training trajectory does not depend
    on how many evals there were (e.g. BatchNorm recalibration with dropout active)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        seed_everything(rng)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def generator(rng: Rng, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(rng)
    return g


def global_states() -> dict[str, object]:
    """The process-wide RNG states (Python's, numpy's legacy global, torch's CPU and CUDA
    ones) as tensors and plain values, which `weights_only` checkpoint loading accepts."""
    _, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(key, np.ndarray)  # the legacy tuple form
    return {
        "python": random.getstate(),
        "numpy": {"key": key.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_global_states(states: Mapping[str, Any]) -> None:
    """Put back what `global_states` returned."""
    random.setstate(states["python"])
    numpy = states["numpy"]
    np.random.set_state(("MT19937", np.array(numpy["key"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
