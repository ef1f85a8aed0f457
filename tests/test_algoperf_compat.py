"""AlgoPerf import and `--compat algoperf`: an AlgoPerf-format log tree written here, imported and
scored, against a re-implementation of AlgoPerf's scoring code path; then each documented
difference between that code and the written rules (docs/scoring.md), one test each."""

from __future__ import annotations

import glob
import json
import math
import operator
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scoring_fixtures import write_run, write_table

from harness.core.errors import PacerUserError
from harness.core.store import load_results
from harness.scoring import algoperf_import
from harness.scoring.algoperf_compat import score_algoperf
from harness.scoring.algoperf_import import ImportSummary, algoperf_targets, import_algoperf
from harness.scoring.rules import ScoringRules, score_frame
from harness.scoring.scorers import score_roots

NO_BOOT = ScoringRules(bootstrap=0)
# Typed from AlgoPerf's workload modules (algoperf/workloads/*/workload.py and the variant subclasses).
TARGETS = {
    "ogbg": ("validation/mean_average_precision", 0.28098), "ogbg_model_size": ("validation/mean_average_precision", 0.269446),
    "wmt": ("validation/bleu", 30.8491), "criteo1tb": ("validation/loss", 0.123735),
    "criteo1tb_embed_init": ("validation/loss", 0.129657), "fastmri": ("validation/ssim", 0.723653),
}
FRAMEWORK = {"ogbg": "jax", "ogbg_model_size": "jax", "wmt": "pytorch", "criteo1tb": "jax", "criteo1tb_embed_init": "jax", "fastmri": "pytorch"}
BASE_WORKLOADS = ["criteo1tb", "fastmri", "imagenet_resnet", "imagenet_vit", "librispeech_conformer", "librispeech_deepspeech", "ogbg", "wmt"]
# mlcommons/submissions_algorithms scoring/workload_targets_v05.json: held_out_workloads
HELD_OUT_V05 = ["criteo1tb_embed_init", "fastmri_tanh", "imagenet_resnet_large_bn_init", "librispeech_conformer_layernorm", "ogbg_model_size", "wmt_glu_tanh"]


# ------------------------------------------------------------------ an AlgoPerf log tree


def write_algoperf_trial(trial_dir: Path, workload: str, times: list[float], values: list[float], *, extra_rows: str = "") -> None:
    metric, _ = TARGETS[workload]
    name = metric.split("/", 1)[1]
    trial_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({
        "accumulated_eval_time": np.arange(1, len(times) + 1) * 3.0, "accumulated_logging_time": 0.5, "accumulated_submission_time": times,
        "global_step": np.arange(1, len(times) + 1) * 100, "preemption_count": 0, "score": times, "total_duration": np.array(times) * 1.3,
        f"train/{name}": values, metric: values, "validation/num_examples": 1000, f"test/{name}": values,
    })
    (trial_dir / "eval_measurements.csv").write_text(frame.to_csv(index=False) + extra_rows, encoding="utf-8")
    (trial_dir / "hparams.json").write_text(json.dumps({"learning_rate": 0.001, "trial": trial_dir.name}), encoding="utf-8")


def random_trial(rng: np.random.Generator, workload: str) -> tuple[list[float], list[float]]:
    """A curve that improves towards a final value around the target (some reach it, some not)."""
    metric, target = TARGETS[workload]
    n = int(rng.integers(3, 9))
    times = list(np.cumsum(rng.uniform(50, 400, n)))
    minimize = "loss" in metric
    final = target * (1 + rng.normal(0, 0.015)) if not minimize else target * (1 - rng.normal(0, 0.015))
    start = target * (0.5 if not minimize else 1.5)
    values = [start + (final - start) * (1 - math.exp(-3 * (k + 1) / n)) / (1 - math.exp(-3)) for k in range(n)]
    return [round(t, 3) for t in times], [round(v, 6) for v in values]


def write_algoperf_tree(root: Path, seed: int = 0) -> None:
    """Three submissions, two studies x three trials on four base workloads and two held-out
    variants; one trial with no eval file; one rerun folder (timestamp suffix) repeating a trial."""
    rng = np.random.default_rng(seed)
    for submission in ("alpha", "beta", "gamma"):
        for study in range(2):
            for workload in TARGETS:
                for trial in range(1, 4):
                    trial_dir = root / submission / f"study_{study}" / f"{workload}_{FRAMEWORK[workload]}" / f"trial_{trial}"
                    if (submission, study, workload, trial) == ("gamma", 1, "wmt", 2):
                        trial_dir.mkdir(parents=True)  # a trial that never wrote its eval file
                        continue
                    write_algoperf_trial(trial_dir, workload, *random_trial(rng, workload))
    rerun = root / "alpha-2024-05-01-10-00-00" / "study_0" / "ogbg_jax" / "trial_1"
    write_algoperf_trial(rerun, "ogbg", [100.0, 200.0, 300.0], [0.2, 0.27, 0.29])


# ------------------------------------------------------------------ AlgoPerf's code path, re-implemented


TIMESTAMP = r"-\d{4}(-\d{2}){5}"
MINIMIZED = ["ce_loss", "error_rate", "ctc_loss", "wer", "l1_loss", "loss"]
MAXIMIZED = ["mean_average_precision", "ssim", "accuracy", "bleu"]


def algoperf_is_minimized(column: str) -> bool:
    """Direction guessed from the column name by substring, in the registry's order."""
    registry = {f"{split}/{m}": True for split in ("train", "validation") for m in MINIMIZED}
    registry.update({f"{split}/{m}": False for split in ("train", "validation") for m in MAXIMIZED})
    return next(value for key, value in registry.items() if key in column)


def algoperf_experiment_df(experiment_dir: str) -> pd.DataFrame:
    """One row per trial with arrays per column; timestamped rerun folders are pooled in."""
    rows = []
    folders = sorted(p for p in glob.glob(f"{experiment_dir}*") if p == experiment_dir or re.fullmatch(re.escape(experiment_dir) + TIMESTAMP, p))
    for folder in folders:
        for study in sorted(os.listdir(folder)):
            for workload in sorted(w for w in os.listdir(os.path.join(folder, study)) if os.path.isdir(os.path.join(folder, study, w))):
                data: dict[str, object] = {"workload": workload}
                for trial in sorted(t for t in os.listdir(os.path.join(folder, study, workload)) if re.match(r"trial_(\d+)", t)):
                    try:
                        trial_df = pd.read_csv(os.path.join(folder, study, workload, trial, "eval_measurements.csv"))
                    except FileNotFoundError:
                        continue
                    data["trial"], data["study"] = (trial, folder), study
                    for column in trial_df.columns:
                        data[column] = trial_df[column].to_numpy()
                    rows.append(dict(data))
    return pd.DataFrame(rows)


def algoperf_best_trial_index(group: pd.DataFrame, metric: str, target: float) -> tuple[int, int]:
    """`get_best_trial_index`, with eval-index ties going to the smaller time (the published
    leaderboards' choice; AlgoPerf's `idxmin` takes the first in directory-listing order)."""
    op = operator.le if algoperf_is_minimized(metric) else operator.ge
    reached = group[metric].apply(lambda x: op(x, target))
    reached = reached[reached.apply(np.any)]
    if len(reached) == 0:
        return -1, -1
    index = reached.apply(np.argmax)
    tied = index[index == index.min()].index
    trial = min(tied, key=lambda t: group["score"].loc[t][index[t]])
    return trial, index[trial]


def algoperf_times(df: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = []
    for workload, group in df.groupby("workload"):
        base_name = re.sub(r"_(jax|pytorch)$", "", workload)
        metric, target = TARGETS[base_name]
        per_study = []
        for _, study_group in group.groupby("study"):
            trial, at = algoperf_best_trial_index(study_group, metric, target)
            per_study.append(study_group["score"].loc[trial][at] if at > -1 else float("inf"))
        rows.append({"submission": name, "workload": base_name, "score": np.median(per_study)})
    return pd.DataFrame(rows).pivot(index="submission", columns="workload", values="score")


def algoperf_scores(root: Path) -> pd.Series:
    names = sorted(p.name for p in root.iterdir() if not re.search(TIMESTAMP + "$", p.name))
    df = pd.concat([algoperf_times(algoperf_experiment_df(str(root / n)), n) for n in names])
    df = df.reindex(columns=sorted(BASE_WORKLOADS + HELD_OUT_V05))  # df[base_workloads + held_out_workloads] (KeyError when one is absent)
    variants = [w for w in df.keys() if w not in BASE_WORKLOADS]
    for workload in variants:  # the variant is a miss where its base is inf or NaN
        base = next(b for b in BASE_WORKLOADS if b in workload)
        df[workload] = df.apply(lambda x, w=workload, b=base: np.inf if x[b] == np.inf or np.isnan(x[b]) else x[w], axis=1)
    best = df.min(axis=0)
    df[df.apply(lambda x: x > 4 * best, axis=1)] = np.inf
    for workload in variants:  # the base is a miss where its variant is inf or NaN
        base = next(b for b in BASE_WORKLOADS if b in workload)
        df[base] = df.apply(lambda x, w=workload, b=base: np.inf if x[w] == np.inf or np.isnan(x[w]) else x[b], axis=1)
    df = df[BASE_WORKLOADS]
    df.update(df.div(df.min(axis=0), axis=1))
    taus = np.linspace(1.0, 4.0, 100)
    profile = pd.concat([(df <= tau).sum(axis=1) / 8 for tau in taus], axis=1)
    profile.columns = taus
    return pd.Series(np.trapezoid(profile, x=profile.columns) / 3.0, index=profile.index)


# ------------------------------------------------------------------ import + compat == AlgoPerf


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ImportSummary, list[str]]:
    logs, out = tmp_path_factory.mktemp("algoperf_logs"), tmp_path_factory.mktemp("imported")
    write_algoperf_tree(logs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = import_algoperf(logs, out, "v0.5", "external")
    return logs, out, summary, [str(w.message) for w in caught]


def test_import_writes_one_run_per_trial_and_reports_problems(imported: tuple[Path, Path, ImportSummary, list[str]]) -> None:
    logs, out, summary, messages = imported
    assert summary.submissions == ["alpha", "beta", "gamma"] and summary.runs == 3 * 2 * 6 * 3 + 1
    assert any("gamma/study_1/wmt_pytorch/trial_2/eval_measurements.csv: missing" in w for w in messages)
    assert summary.reruns == ["alpha study_0 ogbg trial_1: alpha and alpha-2024-05-01-10-00-00"]
    df = load_results(out)
    run = df[(df.submission == "beta") & (df.workload == "ogbg_model_size")].iloc[0]
    assert run.validation_target == 0.269446 and run.base_workload == "ogbg" and run.variant == "model_size" and run.max_runtime_sec == 18477


def test_compat_scores_equal_algoperf_code_to_four_decimals(imported: tuple[Path, Path, ImportSummary, list[str]]) -> None:
    logs, out, _, _ = imported
    expected = algoperf_scores(logs)
    got = score_roots([out], NO_BOOT, compat="algoperf", cache=False).scores
    assert expected.max() > 0 and expected.nunique() == 3  # the fixture discriminates
    pd.testing.assert_series_equal(got.sort_index().round(4), expected.sort_index().round(4), check_names=False)


def test_import_and_score_verbs_end_to_end(imported: tuple[Path, Path, ImportSummary, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI's entry point in this interpreter (tests/test_scoring.py runs `score --format json` in a fresh one)."""
    from harness.cli import main

    logs, _, _, _ = imported
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the broken trials' warnings, checked in test_import_writes_one_run_per_trial_and_reports_problems
        assert main(["import-algoperf", str(logs), "--out", str(tmp_path), "--targets", "v0.5", "--ruleset", "external"]) == 0
    out = capsys.readouterr().out
    assert "imported 109 runs of 3 submissions" in out
    # grouped by kind with counts on the terminal; every one in the file beside the import
    assert "warning: 1 x duplicate rerun (scoring keeps the one with more evals; --compat algoperf pools them) (e.g. alpha study_0 ogbg trial_1: alpha and" in out
    assert "warning: 1 x missing; the trial counts as a miss (e.g. " in out and f"all 2 warnings: {tmp_path / 'import_warnings.txt'}" in out
    logged = (tmp_path / "import_warnings.txt").read_text().splitlines()
    assert len(logged) == 2 and logged[0].endswith("gamma/study_1/wmt_pytorch/trial_2/eval_measurements.csv: missing; the trial counts as a miss")
    assert main(["score", str(tmp_path), "--compat", "algoperf", "--format", "json", "--bootstrap", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: round(v, 4) for k, v in data["scores"].items()} == algoperf_scores(logs).round(4).to_dict()
    assert data["score_ci"] is None and data["intervals_note"].startswith("no intervals: AlgoPerf's scoring code has none")
    assert data["clock"]["note"] == "times in wall-clock seconds"  # imported AlgoPerf logs have no clock block


def test_import_verb_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["import-algoperf", str(tmp_path), "--out", str(tmp_path / "o"), "--targets", "v9"]) == 2
    assert "unknown AlgoPerf targets 'v9' (valid: v0.5, v0.6, v1.0)" in capsys.readouterr().err
    assert main(["import-algoperf", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"pacer: error: no AlgoPerf experiment under {tmp_path} (expected study_<k>/<workload>_<framework>/trial_<i>/eval_measurements.csv)"
    assert not (tmp_path / "o").exists()
    assert main(["import-algoperf", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--ruleset", "other"]) == 2


def test_an_import_over_runs_already_there_needs_overwrite_and_keeps_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    logs, out = tmp_path / "logs", tmp_path / "out"
    write_algoperf_trial(logs / "sub" / "study_0" / "ogbg_jax" / "trial_1", "ogbg", [10.0, 20.0], [0.1, 0.3])
    args = ["import-algoperf", str(logs), "--out", str(out)]
    assert main(args) == 0
    run_dir = out / "sub" / "external" / "sub" / "ogbg" / "study_0" / "trial_1"
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "evals.jsonl").write_text('{"old": true}\n')
    capsys.readouterr()
    assert main(args) == 2
    assert capsys.readouterr().err == (f"pacer: error: 1 run folder(s) under {out} already hold a run (e.g. {run_dir}): pass --overwrite to replace their records "
                                       "(other files there are kept), or import into another --out\n")
    assert "old" in (run_dir / "evals.jsonl").read_text()
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in run_dir.iterdir()) == ["evals.jsonl", "notes.txt", "run.json"] and "old" not in (run_dir / "evals.jsonl").read_text()


def test_an_import_into_a_study_folder_linked_elsewhere_is_refused(tmp_path: Path) -> None:
    logs, out, elsewhere = tmp_path / "logs", tmp_path / "out", tmp_path / "elsewhere"
    write_algoperf_trial(logs / "sub" / "study_0" / "ogbg_jax" / "trial_1", "ogbg", [10.0, 20.0], [0.1, 0.3])
    (out / "sub" / "external" / "sub" / "ogbg").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "sub" / "external" / "sub" / "ogbg" / "study_0").symlink_to(elsewhere)
    with pytest.raises(PacerUserError, match="outside the results root"):
        import_algoperf(logs, out, "v0.5", "external", overwrite=True)
    assert not any(elsewhere.iterdir())


def test_import_tolerates_empty_truncated_and_missing_csvs(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "sub"
    write_algoperf_trial(logs / "study_0" / "ogbg_jax" / "trial_1", "ogbg", [10.0, 20.0], [0.1, 0.3], extra_rows="30.0,")
    empty = logs / "study_0" / "ogbg_jax" / "trial_2"
    empty.mkdir(parents=True)
    (empty / "eval_measurements.csv").write_text("")
    (logs / "study_0" / "ogbg_jax" / "trial_3").mkdir()
    (logs / "study_0" / "mnist_jax" / "trial_1").mkdir(parents=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = import_algoperf(tmp_path / "logs", tmp_path / "out", "v0.6", "self")
    messages = " | ".join(str(w.message) for w in caught)
    assert "trial_1/eval_measurements.csv: dropping 1 cut-short row(s)" in messages
    assert "trial_2/eval_measurements.csv: empty" in messages and "trial_3/eval_measurements.csv: missing" in messages
    assert summary.unknown_workloads == {"mnist_jax"} and summary.runs == 3
    result = score_frame(load_results(tmp_path / "out"), NO_BOOT)
    assert result.ruleset == "self" and result.times.loc["sub", "ogbg"] == 20.0
    assert result.trials["max_runtime_sec"].iloc[0] == 12011 * 1.5  # v0.6 self-tuning budget


def test_target_tables_hold_the_published_values_and_the_held_out_draw() -> None:
    v05, v06 = algoperf_targets("v0.5"), algoperf_targets("v0.6")
    for workload, (metric, target) in TARGETS.items():
        assert v05["workloads"][workload]["validation"] == target and metric.endswith(v05["workloads"][workload]["metric"])
    assert len([w for w in v05["workloads"].values() if w["variant"] is None]) == 8 and len(v05["workloads"]) == 32
    assert v05["workloads"]["fastmri"]["max_runtime_sec"] == 8859 and v06["workloads"]["fastmri"]["max_runtime_sec"] == 4430
    assert v05["workloads"]["imagenet_resnet"]["validation"] == 1 - 0.22569 and v06["held_out"] == []
    # AlgoPerf's generate_held_out_workloads.py with the published seed reproduces the v0.5 draw.
    candidates = {
        "librispeech": ["librispeech_conformer_attention_temperature", "librispeech_conformer_layernorm", "librispeech_deepspeech_no_resnet",
                        "librispeech_deepspeech_norm_and_spec_aug", "librispeech_deepspeech_tanh"],
        "imagenet": ["imagenet_resnet_silu", "imagenet_resnet_gelu", "imagenet_resnet_large_bn_init", "imagenet_vit_glu", "imagenet_vit_post_ln", "imagenet_vit_map"],
        "ogbg": ["ogbg_gelu", "ogbg_silu", "ogbg_model_size"], "wmt": ["wmt_post_ln", "wmt_attention_temp", "wmt_glu_tanh"],
        "fastmri": ["fastmri_model_size", "fastmri_tanh", "fastmri_layernorm"], "criteo1tb": ["criteo1tb_layernorm", "criteo1tb_embed_init", "criteo1tb_resnet"],
    }
    rng = np.random.default_rng(v05["held_out_seed"])
    assert [v[rng.integers(len(v))] for v in candidates.values()] == v05["held_out"]
    with pytest.raises(PacerUserError, match="unknown AlgoPerf targets"):
        algoperf_targets("v9")


def test_v1_table_adds_finewebedu_lm_as_a_ninth_base_workload() -> None:
    v06, v10 = algoperf_targets("v0.6"), algoperf_targets("v1.0")
    bases = [w for w, spec in v10["workloads"].items() if spec["variant"] is None]
    assert v10["num_base_workloads"] == len(bases) == 9 and "finewebedu_lm" in bases and v10["held_out"] == []
    lm = v10["workloads"]["finewebedu_lm"]
    # scoring/workload_targets.json (the workload module says 22.432); algoperf/workloads/finewebedu_lm/workload.py
    assert (lm["metric"], lm["direction"], lm["validation"], lm["test"], lm["max_runtime_sec"], lm["step_hint"]) == ("ppl", "min", 22.2995, None, 31967, 72000)
    assert all(v10["workloads"][w]["validation"] == spec["validation"] for w, spec in v06["workloads"].items())
    assert v10["workloads"]["imagenet_resnet"]["step_hint"] == 195999 and v10["workloads"]["wmt"]["step_hint"] == 120000


def test_v1_import_and_score_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--targets v1.0`: finewebedu_lm logs import (no test target) and both scorers divide by 9."""
    from harness.cli import main

    for submission, time in (("fast", 100.0), ("slow", 300.0)):
        trial = tmp_path / "logs" / submission / "study_0" / "finewebedu_lm_pytorch" / "trial_1"
        trial.mkdir(parents=True)
        frame = pd.DataFrame({"global_step": [100, 200], "score": [time / 2, time], "accumulated_submission_time": [time / 2, time],
                              "validation/ppl": [40.0, 22.0], "test/ppl": [1.0, 1.0]})
        (trial / "eval_measurements.csv").write_text(frame.to_csv(index=False))
    assert main(["import-algoperf", str(tmp_path / "logs"), "--out", str(tmp_path / "out"), "--targets", "v1.0"]) == 0
    record = json.loads(next((tmp_path / "out").rglob("run.json")).read_text())
    assert record["round"] == {"version": "v1.0", "num_base_workloads": 9, "held_out": []} and record["time_to_target"]["test"] is None
    capsys.readouterr()
    for compat in ([], ["--compat", "algoperf"]):
        assert main(["score", str(tmp_path / "out"), "--format", "json", "--bootstrap", "0", "--no-cache", *compat]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["scores"]["fast"] == pytest.approx(1 / 9, abs=1e-3) and data["times"]["slow"]["finewebedu_lm"] == 300.0


# ------------------------------------------------------------------ each code-vs-rules difference


def both(root: Path, rules: ScoringRules = NO_BOOT):
    df = load_results(root)
    return score_algoperf(df, rules), score_frame(df, rules)


def test_difference_best_trial_is_the_earliest_eval_index_not_the_fastest_time(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 50.0, evals=2)  # reaches at its 2nd eval, 50 s
    write_run(tmp_path, "a", "w", 0, 1, 30.0, evals=4)  # reaches at its 4th eval, 30 s
    compat, pacer = both(tmp_path)
    assert compat.times.loc["a", "w"] == 50.0 and pacer.times.loc["a", "w"] == 30.0


def test_eval_index_ties_take_the_smaller_time_as_the_published_leaderboards(tmp_path: Path) -> None:
    # The issue's case: trials 2 and 5 of one study both reach at eval 7, at 841.2 s and 640.8 s.
    write_run(tmp_path, "a", "w", 0, 2, 841.2, evals=7)
    write_run(tmp_path, "a", "w", 0, 5, 640.8, evals=7)
    write_run(tmp_path, "a", "w", 0, 3, 500.0, evals=9)  # faster, but at a later eval index: not the best trial
    compat, pacer = both(tmp_path)
    assert compat.times.loc["a", "w"] == 640.8 and pacer.times.loc["a", "w"] == 500.0


def test_difference_rho_integrates_100_trapezoids_over_the_rounds_base_workloads(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10]], "w2": [[10]]}, "b": {"w": [[20]], "w2": [[None]]}})
    write_run(tmp_path, "a", "w_v", 0, 0, 10, base_workload="w", variant="v")
    write_run(tmp_path, "b", "w_v", 0, 0, 10, base_workload="w", variant="v")
    compat, pacer = both(tmp_path)
    assert compat.scores["a"] == pytest.approx(1.0)  # Pacer's own runs: n = the base workloads present (w, w2), not 8
    # r = 2: the 100-point rule puts tau_33 = 2 exactly, so the step contributes 66.5 intervals of 3/99
    assert compat.scores["b"] == pytest.approx(66.5 * 3 / 99 / 3 / 2) and pacer.scores["b"] == pytest.approx((2 / 3 + 1) / 3)  # Pacer: w_v is a workload
    assert score_algoperf(load_results(tmp_path), ScoringRules(bootstrap=0, num_workloads=8)).scores["a"] == pytest.approx(2 / 8)


def test_a_held_out_variant_with_no_result_at_all_misses_its_base(tmp_path: Path) -> None:
    """Every trial folder of one submission's held-out variant has hparams.json but no eval file
    (e.g. out of memory): AlgoPerf counts the variant, so the base workload, as missed."""
    logs = tmp_path / "logs"
    for submission in ("ok", "oom"):
        for workload in ("ogbg", "ogbg_model_size"):
            for trial in (1, 2):
                trial_dir = logs / submission / "study_0" / f"{workload}_jax" / f"trial_{trial}"
                if submission == "oom" and workload == "ogbg_model_size":
                    trial_dir.mkdir(parents=True)
                    (trial_dir / "hparams.json").write_text("{}")
                else:
                    write_algoperf_trial(trial_dir, workload, [100.0, 200.0], [0.1, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_algoperf(logs, tmp_path / "out", "v0.5", "external")
    df = load_results(tmp_path / "out")
    compat, pacer = score_algoperf(df, NO_BOOT), score_frame(df, NO_BOOT)
    assert compat.scored_times.loc["oom", "ogbg"] == math.inf and compat.scored_times.loc["ok", "ogbg"] == 200.0
    assert pacer.scored_times.loc["oom", "ogbg"] == math.inf and pacer.scored_times.loc["ok", "ogbg"] == 200.0


def test_difference_cutoff_comes_before_the_held_out_rule(tmp_path: Path) -> None:
    # x is fastest on the base but misses the variant; y is 5x slower on the base.
    write_table(tmp_path, {"x": {"w": [[10]]}, "y": {"w": [[50]]}})
    write_run(tmp_path, "x", "w_v", 0, 0, None, base_workload="w", variant="v")
    write_run(tmp_path, "y", "w_v", 0, 0, 10, base_workload="w", variant="v")
    compat, pacer = both(tmp_path, ScoringRules(bootstrap=0, held_out=("w_v",), held_out_rule=True))
    assert math.isinf(compat.scored_times.loc["y", "w"]) and math.isinf(compat.scored_times.loc["x", "w"])  # y cut against x, then x filtered
    assert pacer.scored_times.loc["y", "w"] == 50 and pacer.scores["y"] == 1.0


def test_difference_variants_get_the_cutoff_and_every_variant_counts(tmp_path: Path) -> None:
    write_table(tmp_path, {"x": {"w": [[10]]}, "y": {"w": [[12]]}})
    write_run(tmp_path, "x", "w_v", 0, 0, 10, base_workload="w", variant="v")
    write_run(tmp_path, "y", "w_v", 0, 0, 45, base_workload="w", variant="v")  # reached, but > 4x x's variant time
    compat, pacer = both(tmp_path, ScoringRules(bootstrap=0, held_out=("w_v",), held_out_rule=True))
    assert math.isinf(compat.scored_times.loc["y", "w"]) and math.isinf(pacer.scored_times.loc["y", "w"])  # the written rule: within 4x too
    unlisted, unfiltered = both(tmp_path)  # no held-out list: AlgoPerf still filters on every variant present, Pacer scores w_v as a workload
    assert math.isinf(unlisted.scored_times.loc["y", "w"]) and unfiltered.scored_times.loc["y", "w"] == 12


def test_difference_studies_without_any_eval_file_drop_out_of_the_median(tmp_path: Path) -> None:
    write_table(tmp_path, {"a": {"w": [[10], [20]]}})
    write_run(tmp_path, "a", "w", 2, 0, None).evals_path.write_text("")  # study 2: a run with no evals
    compat, pacer = both(tmp_path)
    assert compat.times.loc["a", "w"] == 15.0 and pacer.times.loc["a", "w"] == 20.0


def test_difference_reruns_are_pooled_as_extra_trials(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 10.0, evals=2, experiment="exp", source="algoperf:v0.5")
    write_run(tmp_path, "a", "w", 0, 0, 40.0, evals=6, experiment="exp-2024-01-01-00-00-00", source="algoperf:v0.5")
    compat, pacer = both(tmp_path)
    assert compat.times.loc["a", "w"] == 10.0 and pacer.times.loc["a", "w"] == 40.0


def test_same_in_both_reaching_exactly_the_target_counts_and_reference_misses_get_full_credit(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "w", 0, 0, 10.0)
    df = load_results(tmp_path)
    at_target = df["validation/accuracy"] == df["validation/accuracy"].max()
    df.loc[at_target, "validation/accuracy"] = df["validation_target"]
    assert score_algoperf(df, NO_BOOT).times.loc["a", "w"] == score_frame(df, NO_BOOT).times.loc["a", "w"] == 10.0
    write_table(tmp_path / "ref", {"ref": {"w1": [[20]], "w2": [[None]]}, "new": {"w1": [[10]], "w2": [[7]]}})
    rules = ScoringRules(bootstrap=0, reference="ref", num_workloads=2)
    compat, pacer = both(tmp_path / "ref", rules)
    assert compat.ratios.loc["new", "w2"] == 0.0 and pacer.ratios.loc["new", "w2"] == 1.0  # AlgoPerf: 7 / inf
    assert compat.scores["new"] == pytest.approx(pacer.scores["new"]) == 1.0


def test_imported_rounds_are_scored_by_their_rounds_written_rules(imported: tuple[Path, Path, ImportSummary, list[str]]) -> None:
    _, out, _, _ = imported
    result = score_frame(load_results(out), NO_BOOT)
    assert list(result.scored_times.columns) == ["criteo1tb", "fastmri", "ogbg", "wmt"]  # the variants leave the table
    assert result.rules.num_workloads == 8 and result.rules.held_out_rule and "ogbg_model_size" in result.rules.held_out
    assert result.rules_note.startswith("rules: AlgoPerf v0.5's written rules: 8 base workloads, held-out variants ") and "criteo1tb_embed_init" in result.rules_note
    assert result.scores.max() <= 4 / 8  # four of the round's eight base workloads were run
    given = score_frame(load_results(out), ScoringRules(bootstrap=0, held_out=("ogbg_model_size",), held_out_rule=True))
    assert given.rules_note is None and "criteo1tb_embed_init" in given.scored_times.columns  # rules given explicitly win


def test_the_import_leaves_the_cache_the_records_would_give(imported: tuple[Path, Path, ImportSummary, list[str]]) -> None:
    """`pacer score OUT` after an import reads the Parquet cache the import wrote from memory: it
    must hold what reading every record gives."""
    _, out, _, _ = imported
    cached, read = load_results(out, cache=True), load_results(out)
    assert (out / ".pacer_results.parquet").exists() and len(cached) == len(read) > 0
    pd.testing.assert_frame_equal(cached[sorted(cached.columns)], read[sorted(read.columns)], check_dtype=False)


def test_an_import_in_worker_processes_equals_the_one_in_process(imported: tuple[Path, Path, ImportSummary, list[str]], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaderboard's logs are imported by one process per core, in chunks: same records, same
    cache, same warnings in the same order as the fixture's import, which stays in one process."""
    logs, out, summary, messages = imported
    monkeypatch.setattr(algoperf_import, "CHUNK", 10)
    monkeypatch.setattr(algoperf_import.os, "sched_getaffinity", lambda pid: {0, 1})  # two workers even on a one-core machine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel = import_algoperf(logs, tmp_path, "v0.5", "external")
    assert [str(w.message) for w in caught] == messages and parallel.runs == summary.runs
    one, many = load_results(out, cache=True), load_results(tmp_path, cache=True)
    assert (tmp_path / ".pacer_results.parquet").exists()
    for df in (one, many):
        df["run_dir"] = df["run_dir"].str.split("/imported[^/]*/|/test_an_import[^/]*/", regex=True).str[-1]
    pd.testing.assert_frame_equal(one, many)


def test_cells_that_are_not_numbers_and_repeated_columns(tmp_path: Path) -> None:
    trial = tmp_path / "logs" / "sub" / "study_0" / "ogbg_jax" / "trial_1"
    trial.mkdir(parents=True)
    (trial / "eval_measurements.csv").write_text(
        ",global_step,score,validation/mean_average_precision,validation/mean_average_precision,note\n"
        "0,100,10.5,nan,0.9,x\n1,200,20.5,0.3,0.1,\n")
    import_algoperf(tmp_path / "logs", tmp_path / "out", "v0.6", "external")
    (evals,) = (tmp_path / "out").rglob("evals.jsonl")
    rows = [json.loads(line) for line in evals.read_text().splitlines()]
    assert rows[0] == {"global_step": 100, "score": 10.5, "validation/mean_average_precision": None, "note": None,
                       "accumulated_submission_time": 10.5, "examples_seen": None}
    record = json.loads(next((tmp_path / "out").rglob("run.json")).read_text())
    assert record["time_to_target"]["validation"] == 20.5 and record["steps_to_target"]["validation"] == 200


@pytest.mark.parametrize("body", ["0,100,-10.5,0.9\n1,200,20.5,0.95\n", "0,100,10.5,0.9\n1,200,5.0,0.95\n", "0,-100,10.5,0.9\n"])
def test_negative_or_backward_times_make_the_trial_a_miss_with_a_warning(tmp_path: Path, body: str) -> None:
    trial = tmp_path / "logs" / "sub" / "study_0" / "ogbg_jax" / "trial_1"
    trial.mkdir(parents=True)
    (trial / "eval_measurements.csv").write_text(",global_step,accumulated_submission_time,validation/mean_average_precision\n" + body)
    with pytest.warns(UserWarning, match=r"eval_measurements.csv: negative or decreasing accumulated_submission_time or global_step; the trial counts as a miss"):
        import_algoperf(tmp_path / "logs", tmp_path / "out", "v0.6", "external")
    record = json.loads(next((tmp_path / "out").rglob("run.json")).read_text())
    assert record["time_to_target"]["validation"] is None


def test_score_and_import_verbs_do_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, harness.cli, harness.scoring.score_cli, harness.scoring.algoperf_import; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # importing torch alone takes ~3 s of every `pacer score`


def test_import_warnings_group_by_kind_with_counts() -> None:
    from harness.scoring.algoperf_import import group_problems

    problems = [("a.csv", "dropping 3 cut-short row(s)"), ("b.csv", "dropping 12 cut-short row(s)"), ("mnist_jax", "skipped unknown workload folder (not in AlgoPerf v0.5)")]
    assert group_problems(problems) == {"dropping N cut-short row(s)": (2, "a.csv"), "skipped unknown workload folder (not in AlgoPerf v0.5)": (1, "mnist_jax")}
