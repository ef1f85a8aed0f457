"""Contention readings (harness/core/contention.py) and their place in the run record."""

from __future__ import annotations

import json

from test_cli import TINY_RUN

from harness.cli import main, summary_line
from harness.core.contention import MAX_RUN_QUEUE_WAIT, SchedSnapshot, assess, snapshot

SECOND = 10**9


def test_a_run_that_got_its_cpu_is_not_contended():
    block = assess(SchedSnapshot(0, 0, 0.5), SchedSnapshot(10 * SECOND, SECOND // 10, 1.0), {"spread": 1.1})
    assert block["contended"] is False and block["reasons"] == []
    assert block["run_queue_wait_fraction"] == round(0.1 / 10.1, 4)
    assert block["load_average"] == [0.5, 1.0]


def test_waiting_for_a_cpu_beyond_the_limit_is_contended():
    waited = int(10 * SECOND * (MAX_RUN_QUEUE_WAIT + 0.1) / (1 - MAX_RUN_QUEUE_WAIT - 0.1))
    block = assess(SchedSnapshot(0, 0, 4.0), SchedSnapshot(10 * SECOND, waited, 4.2), None)
    assert block["contended"] is True
    assert block["reasons"] == [f"waited for a CPU {MAX_RUN_QUEUE_WAIT + 0.1:.0%} of its runnable time (limit {MAX_RUN_QUEUE_WAIT:.0%})"]


def test_the_probes_spread_is_recorded_but_flags_nothing():
    """Measured: the spread does not tell a quiet machine from an oversubscribed one."""
    block = assess(SchedSnapshot(0, 0, 1.0), SchedSnapshot(SECOND, 0, 1.0), {"spread": 5.0})
    assert block["contended"] is False and block["reference_spread"] == 5.0


def test_snapshot_reads_this_process():
    before = snapshot()
    sum(i * i for i in range(300_000))
    after = snapshot()
    assert after.on_cpu_ns > before.on_cpu_ns >= 0 and after.waiting_ns >= before.waiting_ns >= 0


def test_a_normalized_run_records_its_clock_and_contention(results_root):
    assert main(["run", f"results_root={results_root}", "experiment=clock", *TINY_RUN]) == 0
    record = json.loads(next(results_root.rglob("run.json")).read_text())
    clock, contention = record["clock"], record["contention"]
    assert clock["kind"] == "normalized" and clock["unit"] == "reference s" and clock["reference_sec"] > 0
    assert clock["torch_threads"] == 1 and clock["probes"]["count"] >= 2
    assert set(contention) >= {"contended", "reasons", "run_queue_wait_fraction", "load_average", "reference_spread"}
    assert record["raw_time_to_target"] == {"validation": None, "test": None}
    evals = [json.loads(line) for line in next(results_root.rglob("evals.jsonl")).read_text().splitlines()]
    assert all(row["accumulated_raw_submission_time"] > 0 for row in evals)


def test_the_summary_line_of_a_contended_run_says_so():
    record = {"time_to_target": {"validation": 12.5}, "steps_to_target": {"validation": 300}, "status": "target_reached", "clock": {"kind": "normalized"},
              "experiment": "e", "ruleset": "external", "submission": "nadamw", "workload": "mnist1d_mlp", "study": 0, "trial": 0,
              "config": {"results_root": "results"}, "contention": {"contended": True, "reasons": ["waited for a CPU 40% of its runnable time (limit 25%)"]}}
    assert summary_line(record) == ("nadamw on mnist1d_mlp: reached the target in 12.5 reference s (300 steps); flagged contended "
                                    "(waited for a CPU 40% of its runnable time (limit 25%)): its time is not comparable; "
                                    "record under results/e/external/nadamw/mnist1d_mlp/study_0/trial_0")
    record["contention"] = {"contended": False, "reasons": []}
    assert "contended" not in summary_line(record)
