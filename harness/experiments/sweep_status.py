"""`pacer status`: where each cell of a sweep stands, as a table; `--wait` follows it.

It reads the manifest and the run records through `harness.experiments.manifest`, without torch."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf
from tqdm import tqdm

from harness import CONFIG_DIR
from harness.core.errors import PacerUserError
from harness.experiments.manifest import MANIFEST, STATES, CellState, experiment_dir, read_manifest, refresh, wait_until_settled


def status(experiment: str, results_root: str | None, wait: bool) -> int:
    """`pacer status`: print where each cell of `experiment`'s sweep under `results_root` (None:
    the config's default) stands, after following it to its end with `wait`. Returns 1 when
    some cell failed, else 0. Raises PacerUserError (one line) for a bad experiment name or a
    missing manifest."""
    root = results_root or str(OmegaConf.load(CONFIG_DIR / "config.yaml")["results_root"])
    exp_dir = experiment_dir(root, experiment)
    if not (exp_dir / MANIFEST).exists():
        raise PacerUserError(f"no sweep manifest for experiment {experiment} under {root} ({exp_dir / MANIFEST})")
    return show_status(exp_dir, Path(root), wait, poll_sec=2.0)


def show_status(exp_dir: Path, results_root: Path, wait: bool, poll_sec: float) -> int:
    """Print the table (after following the sweep to its end with `wait`); exit code 1 when
    some cell failed, else 0."""
    if wait:
        manifest, counts = _follow(exp_dir, results_root, poll_sec)
    else:
        manifest = read_manifest(exp_dir)
        counts = refresh(manifest, results_root, exp_dir)
    print(format_table(manifest, counts))
    return 1 if counts["failed"] else 0


def _follow(exp_dir: Path, results_root: Path, poll_sec: float) -> tuple[dict[str, object], dict[str, int]]:
    bar = None
    for manifest, counts in wait_until_settled(exp_dir, results_root, poll_sec):
        if bar is None:
            bar = tqdm(total=len(manifest["jobs"]), desc=f"sweep {exp_dir.name}", unit="run", file=sys.stderr, disable=not sys.stderr.isatty())
        bar.n = counts["done"] + counts["failed"]
        bar.set_postfix(running=counts["running"], failed=counts["failed"])
    if bar is not None:
        bar.close()
    return manifest, counts


def format_table(manifest: Mapping[str, object], counts: Mapping[str, int]) -> str:
    """One row per submission x workload with done/running/pending/failed counts, then one
    line per failed cell with the last line of its error."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    failures = []
    for key, entry in sorted(manifest["jobs"].items()):
        submission, workload, study, trial = key.split("/")
        state = CellState(entry["state"])
        rows.setdefault((submission, workload), dict.fromkeys(STATES, 0))[state.column] += 1
        if state.column == "failed":
            failures.append(f"  {submission} on {workload} {study} {trial} (attempt {entry.get('attempts', 0)}, job {entry.get('job_id')}): {entry.get('reason')}")
    total = sum(counts.values())
    width_s = max([len("submission"), *(len(s) for s, _ in rows)])
    width_w = max([len("workload"), *(len(w) for _, w in rows)])
    lines = [
        f"experiment {manifest['experiment']}: {total} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES),
        f"{'submission':<{width_s}}  {'workload':<{width_w}}  " + "  ".join(f"{s:>7}" for s in STATES),
    ]
    lines += [f"{s:<{width_s}}  {w:<{width_w}}  " + "  ".join(f"{c[state]:>7}" for state in STATES) for (s, w), c in sorted(rows.items())]
    if failures:
        lines += ["failed:", *failures]
    return "\n".join(lines)
