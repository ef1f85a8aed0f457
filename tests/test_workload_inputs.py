"""A bad workload input that tests/test_cpu_suite.py does not cover: an existing data folder
that the user may not write. (That file covers an unknown variant, a target on the wrong
side and a data folder that cannot be created.)

File modes do not bind root, so as root the run goes through `setpriv` as the unprivileged
user `nobody`: the real check against a real read-only folder, never a mock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def unprivileged(command: list[str]) -> list[str]:
    """`command` as a user that file modes bind: as is, or under setpriv as `nobody` for root."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, where file modes do not bind, and setpriv (util-linux) is missing")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


@pytest.fixture
def folders() -> Iterator[tuple[Path, Path]]:
    """A read-only folder and a writable home that `nobody` can reach (under the system temp
    folder, not pytest's private one)."""
    read_only, home = Path(tempfile.mkdtemp(prefix="pacer-read-only-")), Path(tempfile.mkdtemp(prefix="pacer-home-"))
    read_only.chmod(0o555)
    home.chmod(0o777)
    yield read_only, home
    read_only.chmod(0o700)
    shutil.rmtree(read_only)
    shutil.rmtree(home)


def test_an_existing_read_only_data_dir_is_rejected_before_training(folders: tuple[Path, Path]) -> None:
    read_only, home = folders
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(home), "OMP_NUM_THREADS": "1"}
    probe = subprocess.run(unprivileged([sys.executable, "-c", "import harness.cli"]), cwd="/", env=env, capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:  # e.g. a checkout under a root-only folder such as mktemp -d's
        pytest.skip(f"the unprivileged user cannot import the repository here: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    command = [sys.executable, "-m", "harness", "run", "workload=digits_cnn", f"workload.data_dir={read_only}", f"results_root={read_only}/results"]
    result = subprocess.run(unprivileged(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == f"pacer: error: workload digits_cnn: data_dir {read_only} is not writable (config: {REPO / 'configs' / 'workload' / 'digits_cnn.yaml'})"
    assert list(read_only.iterdir()) == []
