"""harness.parallel: the same results, in order, whether run here or in worker processes."""

from __future__ import annotations

import math

import torch

from harness.parallel import map_in_processes


def threads_and_square(x: int) -> tuple[int, int]:
    return torch.get_num_threads(), x * x


def test_workers_give_the_same_results_in_order_with_one_thread_each():
    items = list(range(7))
    assert [r[1] for r in map_in_processes(threads_and_square, items, 2)] == [x * x for x in items]
    assert {r[0] for r in map_in_processes(threads_and_square, items, 2)} == {1}


def test_a_single_item_still_gets_one_thread_when_workers_are_asked_for():
    assert map_in_processes(threads_and_square, [3], 2) == [(1, 9)]
    assert map_in_processes(threads_and_square, [], 2) == []


def test_one_worker_runs_in_this_process():
    assert map_in_processes(math.sqrt, [4.0, 9.0], 1) == [2.0, 3.0]
