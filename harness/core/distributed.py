"""Multi-device runs: one process per device under `torchrun`, joined by DDP.

`pacer run ... devices=N` re-launches itself through `torchrun_command` (one process per
device; NCCL on GPU, gloo on CPU). Inside each process `setup` joins the process group;
the rest of Pacer asks `rank()`, `world_size()` and `is_main()`, reduces through
`all_reduce` and gathers through `all_gather_object`. With one device none of this is
active and every helper is a no-op."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Sequence

import torch
import torch.distributed as dist

# A rank that fails leaves the others waiting in a collective; bound that wait.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


def launched() -> bool:
    """True inside a process started by torchrun (it sets WORLD_SIZE and LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    """True when a process group with more than one process is joined."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Only the main process writes records and prints."""
    return rank() == 0


def local_device(device: str) -> str:
    """This process's device: `cuda:<LOCAL_RANK>` under torchrun with CUDA, else `device`."""
    if device == "cuda" and launched():
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def setup(device: str) -> None:
    """Join the process group torchrun prepared (idempotent; no-op outside torchrun)."""
    if not launched() or dist.is_initialized():
        return
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)


def teardown(*, wait_for_peers: bool = True) -> None:
    """Leave the process group; with `wait_for_peers`, once every process has reached this
    point (a gloo process that leaves while a peer still writes its records can abort at exit).
    A process leaving on an exception must not wait: its peers may be in a collective it never joins."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce `tensor` in place over all processes (`sum` or `max`) and return it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj: object) -> list[object]:
    """Every process's picklable `obj`, in rank order (a collective: every process calls it
    at the same point). Without DDP: `[obj]`."""
    if not active():
        return [obj]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flag: bool) -> bool:
    """True when `flag` is true in any process: a collective that every process must call
    at the same point (e.g. to stop all of them at one step). Without DDP: `flag`."""
    if not active():
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    return bool(all_reduce(torch.tensor([float(flag)], device=device), op="max").item())


def torchrun_command(devices: int, pacer_args: Sequence[str], *, nodes: int = 1, rdzv_endpoint: str | None = None, module: str = "harness") -> list[str]:
    """The command that runs `python -m <module> <pacer_args>` (by default `pacer <args>`) on
    `devices` processes per node.

    One node uses torchrun's standalone rendezvous; several nodes (e.g. a Slurm allocation,
    one torchrun per node) need `rdzv_endpoint` (`host:port` of the first node)."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}"]
    if nodes == 1:
        command.append("--standalone")
    else:
        if rdzv_endpoint is None:
            raise ValueError("a run on several nodes needs rdzv_endpoint")
        command += [f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}"]
    return command + ["-m", module, *pacer_args]


def launch(devices: int, pacer_args: Sequence[str]) -> int:
    """Run `pacer <pacer_args>` on `devices` local processes; the exit code of torchrun."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run(torchrun_command(devices, pacer_args), env=env).returncode
