"""Pacer's own time to submit a 1,000-trial sweep to the real (local) Slurm cluster.

Dry jobs (`--dry`: each exits at once) of 2 submissions x 1 workload x 5 studies x 100 trials
are submitted with `launcher=slurm`; the figure is the wall time of the `pacer sweep` verb in
this process (grid expansion, Halton points, manifest, lock, sbatch of the job arrays), split
into its parts. The arrays are cancelled afterwards. Goal: under 15 s.

    PYTHONPATH=$PWD python benchmarks/sweep_submit.py
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from harness.cli import main
from harness.experiments.manifest import MANIFEST
from harness.experiments.slurm import check_slurm

GOAL_SEC = 15.0


def submit(root: Path) -> tuple[float, pstats.Stats, str]:
    args = ["sweep", f"results_root={root}", "experiment=bench", "submission=[nadamw,adamw]", "workload=[mnist1d_mlp]",
            "ruleset.num_trials=100", "ruleset.num_studies=5", "launcher=slurm", "launcher.array_parallelism=2", "--dry"]
    profile, out = cProfile.Profile(), io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(out):
        profile.runcall(main, args)
    return time.perf_counter() - start, pstats.Stats(profile), out.getvalue()


def main_benchmark() -> int:
    check_slurm()
    with tempfile.TemporaryDirectory() as tmp:
        seconds, stats, out = submit(Path(tmp))
        jobs = json.loads((Path(tmp) / "bench" / MANIFEST).read_text())["jobs"]
        subprocess.run(["scancel", "-n", "pacer-bench"], check=False)
    sbatch = sum(t for (_, _, name), (_, _, _, t, _) in stats.stats.items() if name == "map_array")
    print(out.strip())
    print(f"submitted {len(jobs)} trials in {seconds:.2f} s of Pacer's own time (sbatch via submitit map_array {sbatch:.2f} s; goal < {GOAL_SEC:.0f} s)")
    return 0 if len(jobs) == 1000 else 1


if __name__ == "__main__":
    sys.exit(main_benchmark())
