"""harness.experiments.parallel: the same results, in order, whether run here or in worker processes."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from conftest import REPO

from harness.experiments.parallel import map_in_processes


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


def test_workers_die_with_a_killed_parent(tmp_path):
    """A `pacer calibrate` killed mid-run leaves no worker training on."""
    (tmp_path / "sleeper.py").write_text("import os, time\ndef sleep_and_say(path):\n    open(path, 'w').write(str(os.getpid()))\n    time.sleep(60)\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(REPO)!r}]
        from sleeper import sleep_and_say
        from harness.experiments.parallel import map_in_processes
        map_in_processes(sleep_and_say, [{str(tmp_path / "a")!r}, {str(tmp_path / "b")!r}], 2)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not ((tmp_path / "a").exists() and (tmp_path / "b").exists()):
        assert time.monotonic() < deadline and parent.poll() is None, "the workers never started"
        time.sleep(0.1)
    workers = [int((tmp_path / name).read_text()) for name in ("a", "b")]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived their parent"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "zombie"
