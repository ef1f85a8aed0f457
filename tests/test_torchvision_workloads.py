"""The optional torchvision-backed workloads (`mnist`, `fashion_mnist`, `cifar10`) on tiny
files that the tests write in torchvision's on-disk formats: deterministic splits, a finite
train step and eval, variants, provisional targets, the download decision and every broken
input. Nothing here reaches the network: `no_network` blocks sockets, and the download path
is followed through a stand-in for torchvision's dataset class."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from omegaconf import OmegaConf
from vision_data import make_cifar10, make_mnist, write_idx

from harness import cli
from harness.core.errors import PacerUserError
from harness.core.runner import Runner, RunSettings
from harness.core.spec import ForwardPassMode
from harness.experiments.calibration_records import read_record, record_path
from harness.plugins import hparams as hparamslib
from harness.plugins.submissions import load_submission
from harness.plugins.workloads import CONFIG_DIR, build_workload, suite_workloads, workload_config
from workloads.data.torchvision_files import CIFAR10, FASHION_MNIST, MNIST, TorchvisionFiles

REPO = Path(__file__).resolve().parents[1]
NAMES = ["mnist", "fashion_mnist", "cifar10"]
FILES: dict[str, TorchvisionFiles] = {"mnist": MNIST, "fashion_mnist": FASHION_MNIST, "cifar10": CIFAR10}
TINY = {"validation_size": 10, "eval_train_size": 8, "eval_batch_size": 16}


def write_data(name: str, root: Path, compressed: bool = True) -> Path:
    """Tiny files of the workload's dataset under `root` (its data_dir)."""
    if name == "cifar10":
        return make_cifar10(root, per_batch=6, n_test=10)  # 30 training images
    return make_mnist(root, "MNIST" if name == "mnist" else "FashionMNIST", n_train=30, n_test=10, compressed=compressed)


def tiny(name: str, data_dir: Path, variant: str | None = None, **extra: object):
    return build_workload(workload_config(name) | TINY | {"data_dir": str(data_dir)} | extra, variant)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails at once, as on an air-gapped node."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in tests")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: write_data(name, tmp_path_factory.mktemp(name)) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_deterministic_for_a_dataset_seed(name: str, data: dict[str, Path]) -> None:
    workload = tiny(name, data[name])
    a, b, other = workload.make_splits(0), workload.make_splits(0), workload.make_splits(1)
    for split in ("train", "validation", "test"):
        assert torch.equal(getattr(a, split).inputs, getattr(b, split).inputs) and torch.equal(getattr(a, split).targets, getattr(b, split).targets)
    assert not torch.equal(a.validation.inputs, other.validation.inputs)
    assert torch.equal(a.test.inputs, other.test.inputs)  # the official test set, whatever the seed
    assert (len(a.train), len(a.validation), len(a.test), a.eval_train_size) == (20, 10, 10, 8)
    assert a.train.inputs.dtype == torch.uint8 and a.train.targets.dtype == torch.long
    # train + validation is the official training set, each image once
    train_images = {bytes(x.numpy()) for x in torch.cat([a.train.inputs, a.validation.inputs])}
    official = workload._train_arrays[0]
    assert train_images == {bytes(x.numpy()) for x in official} and len(official) == 30


def test_gzipped_and_raw_idx_files_read_the_same(tmp_path: Path) -> None:
    gz, raw = make_mnist(tmp_path / "gz", compressed=True), make_mnist(tmp_path / "raw", compressed=False)
    assert {p.name for p in (gz / "MNIST" / "raw").iterdir()} == {f"{n}.gz" for n in MNIST.files}
    assert {p.name for p in (raw / "MNIST" / "raw").iterdir()} == set(MNIST.files)
    a, b = tiny("mnist", gz).splits, tiny("mnist", raw).splits
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.test.targets, b.test.targets)
    assert a.train.inputs.shape[1:] == (1, 28, 28)


def nadamw():
    sub = load_submission(OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "submission" / "nadamw.yaml")))
    return sub, hparamslib.resolve(sub.search_space, sub.default, {}, "nadamw")


@pytest.mark.parametrize("name", NAMES)
def test_one_train_step_and_one_eval_are_finite(name: str, data: dict[str, Path]) -> None:
    workload = tiny(name, data[name])
    sub, hp = nadamw()
    rows: list[dict[str, float]] = []
    outcome = Runner(workload, sub.impl, hp, RunSettings(seed=0, max_steps=1, stop_at_target=False), rows.append).run()
    assert outcome.status == "step_cap", outcome.error
    for split, n in (("train", 8), ("validation", 10), ("test", 10)):
        assert math.isfinite(rows[-1][f"{split}/loss"]) and 0 <= rows[-1][f"{split}/accuracy"] <= 1
        assert rows[-1][f"{split}/num_examples"] == n
    assert set(workload.model_params_types) == set(workload.param_shapes)


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_builds_with_its_own_targets(name: str, data: dict[str, Path]) -> None:
    config = workload_config(name)
    assert len(config["variants"]) == 2
    base_model, _ = tiny(name, data[name]).init_model_fn(0)
    for variant, block in config["variants"].items():
        workload = tiny(name, data[name], variant)
        model, _ = workload.init_model_fn(0)
        assert workload.name == f"{name}_{variant}" and workload.validation_target_value == block["validation_target"]
        assert str(model) != str(base_model)
        logits, _ = workload.model_fn(model, workload.splits.validation.select(slice(0, 4)), None, ForwardPassMode.EVAL, 0, False)
        assert logits.shape == (4, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_targets_are_provisional_and_say_how_to_calibrate(name: str) -> None:
    config = workload_config(name)
    record = read_record(record_path(name))
    blocks = [(name, config, record["base"])] + [(f"{name}_{v}", config | b, record["variants"][v]) for v, b in config["variants"].items()]
    for label, cfg, provenance in blocks:
        for key in ("validation_target", "test_target", "max_runtime_sec", "eval_period_sec", "step_hint", "batch_size", "eval_batch_size"):
            assert isinstance(cfg[key], (int, float)) and cfg[key] > 0, f"{label}: {key}"
        assert 0 < cfg["test_target"] <= 1 and 0 < cfg["validation_target"] <= 1 and cfg["eval_period_sec"] < cfg["max_runtime_sec"], label
        assert provenance["method"] == "provisional" and "not measured" in provenance["note"], label  # no invented calibration
        variant = label.removeprefix(name).lstrip("_")
        assert f"pacer calibrate workload={name}{f' variant={variant}' if variant else ''} " in provenance["note"], label
    assert config["calibration"]["steps"] > 0 and config["download"] is True and config["data_dir"] is None
    assert name not in suite_workloads("cpu")


# --- the download decision ---------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_data_dir_downloads_through_torchvision(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in for torchvision's dataset class: records the call and writes what the real one
    would (the same layout), so the workload then reads the downloaded copy."""
    calls: list[tuple[str, bool, bool]] = []

    class FakeDataset:
        def __init__(self, root: str, train: bool = True, download: bool = False):
            calls.append((root, train, download))
            write_data(name, Path(root), compressed=False)

    monkeypatch.setattr(torchvision.datasets, FILES[name].torchvision_class, FakeDataset)
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet: created for the download
    workload = tiny(name, data_dir)
    assert calls == [(str(data_dir), True, True), (str(data_dir), False, True)]
    assert len(workload.splits.test) == 10
    tiny(name, data_dir)  # a complete local copy: no download
    assert len(calls) == 2


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_data_dir_without_download_names_the_dir_and_the_setting(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, FILES[name].torchvision_class, None)  # would fail if called
    with pytest.raises(PacerUserError) as error:
        tiny(name, tmp_path, download=False)
    message = str(error.value)
    assert "\n" not in message and f"workload {name}: {tmp_path / FILES[name].folder} lacks " in message
    assert f"no local copy of {FILES[name].title}; set workload.download=true" in message and str(tmp_path) in message


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_an_offline_download_is_a_clear_error(name: str, tmp_path: Path) -> None:
    """The real torchvision class, with the network blocked by `no_network`."""
    with pytest.raises(PacerUserError) as error:
        tiny(name, tmp_path / "data")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {name}: downloading {FILES[name].title} into {tmp_path / 'data'} failed (")
    assert "check the network, or copy the files there" in message


def test_a_data_dir_that_cannot_be_written_is_an_error_before_a_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, "MNIST", None)  # would fail if called
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PacerUserError, match=rf"^workload mnist: data_dir {blocker}/data cannot be created \(Not a directory\), so MNIST cannot be downloaded into it$"):
        tiny("mnist", blocker / "data")


def test_a_local_copy_is_read_without_writing(data: dict[str, Path]) -> None:
    before = sorted((p, p.stat().st_mtime_ns) for p in data["mnist"].rglob("*"))
    assert len(tiny("mnist", data["mnist"]).splits.train) == 20
    assert sorted((p, p.stat().st_mtime_ns) for p in data["mnist"].rglob("*")) == before  # no cache file, nothing rewritten


# --- broken files ------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


@pytest.mark.parametrize(("name", "file", "breakage", "words"), [
    ("mnist", "t10k-labels-idx1-ubyte.gz", "delete", "lacks t10k-labels-idx1-ubyte: an incomplete copy of MNIST"),
    ("mnist", "train-images-idx3-ubyte.gz", "garbage", "cannot read {path} (BadGzipFile"),
    ("mnist", "train-images-idx3-ubyte.gz", "truncate", "cannot read {path} (EOFError"),
    ("mnist", "train-labels-idx1-ubyte", "truncate", "{path} is not an idx file of unsigned bytes shaped (N) (truncated or corrupt?)"),
    ("mnist", "t10k-images-idx3-ubyte", "garbage", "{path} is not an idx file of unsigned bytes shaped (N, 28, 28)"),
    ("fashion_mnist", "train-labels-idx1-ubyte", "bad_labels", "{path} has labels outside 0..9"),
    ("fashion_mnist", "t10k-labels-idx1-ubyte", "short_labels", "has 10 t10k images but 9 t10k labels"),
    ("cifar10", "data_batch_3", "delete", "lacks data_batch_3: an incomplete copy of CIFAR-10"),
    ("cifar10", "test_batch", "garbage", "cannot read {path} (UnpicklingError"),
    ("cifar10", "data_batch_1", "truncate", "cannot read {path} ("),
])
def test_a_missing_or_corrupt_file_is_a_one_line_error_naming_it(name: str, file: str, breakage: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision.datasets, FILES[name].torchvision_class, None)  # a partial copy is never re-downloaded
    compressed = file.endswith(".gz")
    root = write_data(name, tmp_path, compressed=compressed)
    path = root / FILES[name].folder / file
    if breakage == "delete":
        path.unlink()
    elif breakage == "garbage":
        path.write_bytes(b"not a dataset file at all")
    elif breakage == "truncate":
        _truncate(path)
    elif breakage in ("bad_labels", "short_labels"):
        n = 30 if breakage == "bad_labels" else 9
        write_idx(path, np.full(n, 12 if breakage == "bad_labels" else 1, dtype=np.uint8), compressed=False)
    with pytest.raises(PacerUserError) as error:
        tiny(name, root)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {name}: ") and words.format(path=path) in message, message


@pytest.mark.parametrize("name", NAMES)
def test_a_validation_size_that_leaves_no_training_images_is_one_line(name: str, data: dict[str, Path]) -> None:
    with pytest.raises(PacerUserError) as error:
        tiny(name, data[name], validation_size=30)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {name}: validation_size=30 must leave training images (the training set has 30)"), message


# --- through the CLI ---------------------------------------------------------------------


def _pacer(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_pacer_run_on_generated_mnist_end_to_end(tmp_path: Path) -> None:
    data_dir = make_mnist(tmp_path / "data", n_train=200, n_test=50)
    results = tmp_path / "results"
    result = _pacer("run", "workload=mnist", f"workload.data_dir={data_dir}", "workload.download=false", "workload.validation_size=50",
                    "workload.eval_train_size=50", "submission=nadamw", "max_steps=20", "eval_every_steps=10", f"results_root={results}", "quiet=true")
    assert result.returncode == 0, result.stderr[-2000:]
    trial = results / "default/external/nadamw/mnist/study_0/trial_0"
    record = json.loads((trial / "run.json").read_text())
    evals = [json.loads(line) for line in (trial / "evals.jsonl").read_text().splitlines()]
    assert record["status"] == "step_cap" and record["workload"] == "mnist"
    assert [row["global_step"] for row in evals][-2:] == [10, 20]
    assert all(math.isfinite(row["validation/loss"]) for row in evals) and evals[-1]["test/num_examples"] == 50
    assert evals[-1]["train/loss"] < evals[0]["train/loss"]  # the labels are learnable from brightness


def test_pacer_run_with_no_local_copy_and_no_download_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "workload=fashion_mnist", f"workload.data_dir={tmp_path / 'empty'}", "workload.download=false", f"results_root={tmp_path}/r"])
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pacer: error: workload fashion_mnist: {tmp_path / 'empty' / 'FashionMNIST' / 'raw'} lacks "), lines
    assert "set workload.download=true" in lines[0] and not list(tmp_path.rglob("run.json"))
