"""The clock (harness/core/timer.py): phases, and the normalized clock on a fake time source, so
that "a machine twice as slow" is exact rather than a sleep."""

from __future__ import annotations

import types

import pytest
import torch

from harness.core import timer
from harness.core.timer import PROBE_SHARE, Clock, Reference


class FakeTime:
    """A clock that moves only when work is simulated."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(timer, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def normalized_clock(fake: FakeTime, probe_sec: float, host_sec: float | None) -> Clock:
    clock = Clock(torch.device("cpu"), Reference(lambda: fake.advance(probe_sec), host_sec))
    clock.start_reference()
    return clock


def train(clock: Clock, fake: FakeTime, seconds: float, steps: int = 1) -> None:
    for _ in range(steps):
        with clock.phase("submission"):
            fake.advance(seconds / steps)
        if clock.probe_due():
            clock.probe()


def test_wall_clock_counts_submission_seconds(fake_time):
    clock = Clock(torch.device("cpu"))
    train(clock, fake_time, 2.0)
    with clock.phase("eval"):
        fake_time.advance(5.0)
    assert clock.kind == "wall" and not clock.probe_due()
    assert clock.submission_time == clock.raw_submission_time == pytest.approx(2.0)
    assert clock.totals["eval"] == pytest.approx(5.0)


def test_a_machine_at_half_speed_counts_a_stretch_half(fake_time):
    """The reference takes 2 ms here and 1 ms on the calibration host: 1 s of submission
    wall time here is 0.5 reference seconds."""
    clock = normalized_clock(fake_time, probe_sec=0.002, host_sec=0.001)
    train(clock, fake_time, 1.0, steps=100)
    clock.probe()
    assert clock.raw_submission_time == pytest.approx(1.0)
    assert clock.submission_time == pytest.approx(0.5)
    assert clock.kind == "normalized"


@pytest.mark.parametrize("slowdown", [0.5, 1.0, 3.0])
def test_normalized_time_does_not_depend_on_the_machines_speed(fake_time, slowdown):
    """Every computation, training and reference alike, takes `slowdown` times as long."""
    clock = normalized_clock(fake_time, probe_sec=0.001 * slowdown, host_sec=0.001)
    train(clock, fake_time, 4.0 * slowdown, steps=400)
    clock.probe()
    assert clock.submission_time == pytest.approx(4.0)
    assert clock.raw_submission_time == pytest.approx(4.0 * slowdown)


def test_a_slowdown_midway_is_counted_by_the_probes_around_it(fake_time):
    """A stretch is scaled by the mean of the probes on either side of it."""
    probe = {"sec": 0.001}
    clock = Clock(torch.device("cpu"), Reference(lambda: fake_time.advance(probe["sec"]), host_sec=0.001))
    clock.start_reference()
    train(clock, fake_time, 1.0, steps=1)  # machine at calibration speed
    clock.probe()
    probe["sec"] = 0.002  # from here on twice as slow
    clock.probe()  # an empty stretch
    train(clock, fake_time, 2.0, steps=1)
    clock.probe()
    assert clock.submission_time == pytest.approx(1.0 + 1.0)


def test_probes_cost_about_their_share_and_are_untimed(fake_time):
    clock = normalized_clock(fake_time, probe_sec=0.001, host_sec=0.001)
    train(clock, fake_time, 10.0, steps=1000)
    totals = clock.totals
    assert totals["reference"] == pytest.approx(PROBE_SHARE * 10.0, rel=0.2)
    assert totals["submission"] == pytest.approx(10.0)
    assert clock.probe_summary()["count"] == len(clock.probes) > 1


def test_calibration_run_counts_raw_seconds_and_records_the_probes(fake_time):
    clock = normalized_clock(fake_time, probe_sec=0.003, host_sec=None)
    train(clock, fake_time, 1.0, steps=50)
    assert clock.submission_time == pytest.approx(1.0)
    assert clock.probe_summary()["median_sec"] == pytest.approx(0.003)


def test_state_dict_continues_the_normalized_count(fake_time):
    clock = normalized_clock(fake_time, probe_sec=0.002, host_sec=0.001)
    train(clock, fake_time, 1.0, steps=10)
    saved = clock.state_dict()
    restored = Clock(torch.device("cpu"), Reference(lambda: fake_time.advance(0.002), 0.001))
    restored.load_state_dict(saved)
    restored.start_reference()
    assert restored.submission_time == pytest.approx(0.5)
    assert restored.raw_submission_time == pytest.approx(1.0)
