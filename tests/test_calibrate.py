"""`pacer calibrate` end to end on digits_cnn with tiny N and R: AlgoPerf's target rules,
determinism of the step-based parts, the YAML edit that keeps the rest of the file, and the
provenance in records/calibration/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from harness.cli import CalibrateFlags, parse_calibrate_flags
from harness.core.errors import PacerUserError
from harness.experiments.calibrate import WRITTEN_KEYS, calibrate, retime, retime_summary, targets_from_provenance, write_targets
from harness.experiments.calibration_records import read_record, record_path, write_provenance
from harness.experiments.run_config import compose
from harness.plugins.workloads import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
TINY = {"trials": 1, "reruns": 3, "steps": 6, "eval_every": 2, "algorithms": ["adamw", "nadamw", "sgd_nesterov", "momentum"], "write": False}


def _base(tmp_path: Path) -> dict[str, object]:
    cfg = compose(["workload=digits_cnn", f"results_root={tmp_path / 'results'}", f"workload.data_dir={tmp_path / 'data'}"])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal1")
    return calibrate(_base(root), **TINY) | {"root": root}


def test_targets_follow_the_algoperf_rules(first):
    p, t = first["provenance"], first["targets"]
    assert len(first["trials"]) == 4 and len(first["reruns"]) == 3
    best_vals = p["rerun_best_validation"]
    assert t.validation == sorted(best_vals)[1]  # the median of three
    reached = [i for i, v in enumerate(best_vals) if v >= t.validation]
    assert t.reached == len(reached) >= 2
    assert t.test == min(p["rerun_best_test"][i] for i in reached)
    times = sorted(p["rerun_time_to_target_sec"][i] for i in reached)
    assert t.max_runtime_sec == pytest.approx(4 / 3 * (times[len(times) // 2] if len(times) % 2 else (times[0] + times[1]) / 2), abs=0.006)
    assert t.step_hint == 6 and all(1 <= p["rerun_steps_to_target"][i] <= 6 for i in reached)
    assert targets_from_provenance(p) == t
    best = max(first["trials"], key=lambda s: s.best_validation)
    assert p["best"]["submission"] == best.submission and all(r.submission == best.submission for r in first["reruns"])
    assert p["trials_per_algorithm"] == 1 and p["reruns"] == 3 and p["hardware"]["id"] and p["package_version"]
    assert set(p["best_validation_per_algorithm"]) == set(TINY["algorithms"])


def test_runs_go_through_the_runner_and_keep_records(first):
    records = sorted(str(p.relative_to(first["root"])) for p in first["root"].rglob("run.json"))
    best = first["provenance"]["best"]["submission"]
    assert records == sorted([f"results/calibrate/external/{a}/digits_cnn/study_0/trial_0/run.json" for a in TINY["algorithms"]]
                             + [f"results/calibrate/external/{best}/digits_cnn/study_1/trial_{r}/run.json" for r in range(3)])


def test_same_seeds_give_the_same_step_based_targets_with_parallel_trials(tmp_path):
    small = TINY | {"algorithms": ["adamw", "momentum"], "reruns": 1}
    first, second = (calibrate(_base(tmp_path / str(workers)), **small | {"workers": workers}) for workers in (1, 2))
    a, b = first["targets"], second["targets"]
    assert (a.validation, a.test, a.step_hint, a.reached) == (b.validation, b.test, b.step_hint, b.reached)
    assert [s.evals[-1]["validation/loss"] for s in first["trials"]] == [s.evals[-1]["validation/loss"] for s in second["trials"]]


def test_finished_runs_of_the_same_config_are_reused(tmp_path):
    small = TINY | {"algorithms": ["momentum"], "reruns": 1, "steps": 4}

    def written() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in tmp_path.rglob("run.json")}

    first = calibrate(_base(tmp_path), **small)
    before = written()
    again = calibrate(_base(tmp_path), **small)
    assert written() == before and again["targets"] == first["targets"]
    calibrate(_base(tmp_path), **small | {"steps": 3})  # another step budget: nothing to reuse
    assert all(written()[p] != before[p] for p in before)
    middle = written()
    calibrate(_base(tmp_path), **small | {"steps": 3, "reuse": False})
    assert all(written()[p] != middle[p] for p in middle)


def _changed_keys(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_writing_targets_keeps_the_rest_of_the_file_and_puts_the_provenance_in_the_record(first, tmp_path):
    path, record = tmp_path / "digits_cnn.yaml", tmp_path / "records" / "digits_cnn.json"
    shutil.copy(CONFIG_DIR / "workload" / "digits_cnn.yaml", path)
    record.parent.mkdir()
    shutil.copy(record_path("digits_cnn"), record)
    before_text, before_record = path.read_text(), read_record(record)
    write_targets(path, record, "silu", first["targets"], first["provenance"])
    after = yaml.safe_load(path.read_text())
    before = yaml.safe_load(before_text)
    assert after["variants"]["silu"]["validation_target"] == first["targets"].validation
    assert _changed_keys(before["variants"]["silu"], after["variants"]["silu"]) <= set(WRITTEN_KEYS) - {"provenance"}  # settings and targets only
    assert read_record(record) == before_record | {"variants": before_record["variants"] | {"silu": first["provenance"]}}
    assert after["validation_target"] == before["validation_target"] and after["variants"]["large_bn_init"] == before["variants"]["large_bn_init"]
    assert path.read_text().splitlines()[:2] == before_text.splitlines()[:2]  # comments survive
    write_targets(path, record, None, first["targets"], first["provenance"])
    again = yaml.safe_load(path.read_text())
    assert again["step_hint"] == first["targets"].step_hint and _changed_keys(after, again) <= set(WRITTEN_KEYS) - {"provenance", "variants"}
    assert read_record(record)["base"] == first["provenance"] and list(read_record(record)) == ["base", "variants"]


def _calibrated_base(first, root: Path, **workload) -> dict[str, object]:
    """A config whose workload carries `first`'s targets, with their provenance in a record
    under root/records, as `write=true` would commit them."""
    base = _base(root)
    t = first["targets"]
    base["workload"] |= {"validation_target": t.validation, "test_target": t.test, "max_runtime_sec": t.max_runtime_sec,
                         "eval_period_sec": t.eval_period_sec, "step_hint": t.step_hint} | workload
    write_provenance(record_path("digits_cnn", root / "records"), None, first["provenance"])
    return base


def test_retime_keeps_the_targets_and_remeasures_the_budget_on_the_same_steps(first, tmp_path):
    result = retime(_calibrated_base(first, tmp_path), write=False, records_dir=tmp_path / "records")
    old, new, retimed = first["targets"], result["targets"], result["retimed"]
    assert (new.validation, new.test, new.step_hint, new.reached) == (old.validation, old.test, old.step_hint, old.reached)
    assert retimed["same_steps_as_calibration"] and retimed["rerun_steps_to_target"] == first["provenance"]["rerun_steps_to_target"]
    times = sorted(t for t in retimed["rerun_time_to_target_sec"] if t is not None)
    median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    assert new.max_runtime_sec == pytest.approx(4 / 3 * median, abs=0.006)
    assert targets_from_provenance(first["provenance"] | {"retimed": retimed}) == new
    assert "same as the calibration's: yes" in retime_summary(result)


def test_retime_refuses_a_workload_without_calibration_or_a_target_it_cannot_reach(first, tmp_path):
    with pytest.raises(PacerUserError, match="no `pacer calibrate` provenance to re-time"):
        retime(_calibrated_base(first, tmp_path), write=False, records_dir=tmp_path / "no_records")
    with pytest.raises(PacerUserError, match="reached its validation target 1.0 here"):
        retime(_calibrated_base(first, tmp_path, validation_target=1.0), write=False, records_dir=tmp_path / "records")


def test_bad_flags_are_rejected():
    with pytest.raises(PacerUserError, match="trials='0' must be an integer >= 1"):
        parse_calibrate_flags(["trials=0"])
    with pytest.raises(PacerUserError, match="unknown submission.*lamb"):
        parse_calibrate_flags(["algorithms=adamw,lamb"])
    with pytest.raises(PacerUserError, match="retime='yes' must be true or false"):
        parse_calibrate_flags(["retime=yes"])


def test_flags_are_typed_and_the_rest_are_overrides():
    flags, overrides = parse_calibrate_flags(["workload=digits_cnn", "trials=3", "write=false", "algorithms=adamw,,nadamw", "seed=1"])
    assert flags == CalibrateFlags(trials=3, write=False, algorithms=("adamw", "nadamw"))
    assert overrides == ["workload=digits_cnn", "seed=1"]
    assert parse_calibrate_flags([])[0].algorithms == ("adamw", "nadamw", "sgd_nesterov", "momentum")


def test_calibrate_cli_end_to_end(tmp_path):
    args = ["calibrate", "workload=digits_cnn", "trials=1", "reruns=1", "steps=4", "eval_every=2", "algorithms=nadamw", "write=false",
            f"results_root={tmp_path}", f"workload.data_dir={tmp_path / 'data'}"]
    result = subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "validation target" in result.stdout and "nadamw trial 0" in result.stdout and "nadamw rerun 0" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "harness", "calibrate", "workload=digits_cnn", "reruns=x"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "pacer: error: reruns='x' must be an integer >= 1"
