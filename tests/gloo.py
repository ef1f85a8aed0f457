"""The workloads' DDP checks: a function run on two gloo processes gives what it gives on one."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from harness.core.spec import ForwardPassMode, Workload


def trained(workload: Workload, learning_rate: float) -> nn.Module:
    """The model after one SGD step on the first global batch of 4 (under DDP the ranks' halves'
    gradients are averaged: the step of one process on all 4)."""
    model, _ = workload.init_model_fn(0)
    batch = next(workload.build_input_queue(3, 4))
    outputs, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, 0, update_batch_norm=True)
    loss = workload.loss_fn(batch["targets"], outputs)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= learning_rate * p.grad
    return model


def _on_rank(rank: int, port: int, fn: Callable[..., object], args: tuple[object, ...], out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        result = fn(*args)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def on_two_gloo_processes(fn: Callable[..., object], *args: object, folder: Path) -> object:
    """Rank 0's `fn(*args)` with two gloo processes joined (`fn`: a module-level function)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_on_rank, args=(port, fn, args, folder / "two.pt"), nprocs=2)
    return torch.load(folder / "two.pt")


def assert_same_results(two: Mapping[str, float], one: Mapping[str, float], nan_ok: bool = False) -> None:
    assert two.keys() == one.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-5, nan_ok=nan_ok), key
