"""fastmri on tiny volumes written in the real `.h5` format and AlgoPerf's layout: AlgoPerf's
preprocessing against a NumPy transcription, one real training step and one evaluation
through the real runner for the base workload and each variant, SSIM on hand-made images and
against an independent implementation, the loss, the true-size parameter counts, the
data-directory errors and the config against AlgoPerf's tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fastmri_data import KSPACE_SHAPE, SIZES, TARGET_SHAPE, make_fastmri, write_volume
from gloo import assert_same_results, on_two_gloo_processes, trained
from scipy.ndimage import uniform_filter

from harness.core.errors import PacerUserError
from harness.core.spec import ForwardPassMode, ParameterType
from harness.experiments.job import run_job
from harness.experiments.run_config import compose
from harness.plugins.workloads import build_workload, resolve_variant, workload_config
from workloads.data.fastmri import FastMRISlices, process_slice, undersampling_mask
from workloads.fastmri import FastMRI, ssim, structural_similarity
from workloads.models.fastmri import UNet

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [None, "model_size", "tanh", "layernorm"]
TINY = {"num_channels": 4, "num_pool_layers": 2, "validation_volumes": 1}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fastmri(tmp_path_factory.mktemp("fastmri"))


def tiny_workload(data_dir: Path, variant: str | None = None, **overrides: object) -> FastMRI:
    cfg = workload_config("fastmri") | TINY | {"data_dir": str(data_dir), "num_workers": 0, "eval_num_workers": 0,
                                                "eval_batch_size": 2, "eval_train_size": 4}
    return build_workload(cfg | overrides, variant)


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_one_train_step_and_eval_through_the_runner(variant: str | None, data: Path, tmp_path: Path) -> None:
    overrides = ["workload=fastmri", "submission=momentum", "submission.module=fixed_batch_submission",
                 f"workload.data_dir={data}", "workload.num_workers=0", "workload.eval_num_workers=0",
                 "workload.eval_batch_size=2", "workload.eval_train_size=4", f"results_root={tmp_path}", "max_steps=1",
                 "eval_every_steps=1", "quiet=true", f"variant={variant or 'null'}",
                 *(f"workload.{key}={json.dumps(value)}" for key, value in TINY.items())]
    record = run_job(compose(overrides))
    assert record["status"] == "step_cap", record.get("error")
    row = record["final"]["last_eval"]
    expected = resolve_variant(workload_config("fastmri"), variant)
    assert record["target"]["validation"] == expected["validation_target"]
    assert [row[f"{s}/num_examples"] for s in ("train", "validation", "test")] == [4, SIZES["validation"], SIZES["test"]]
    assert all(-1 <= row[f"{s}/ssim"] <= 1 and row[f"{s}/loss"] > 0 for s in ("train", "validation", "test"))


# AlgoPerf's fastmri_pytorch/models.py, counted by hand: a ConvBlock(i, o) has two bias-free
# 3x3 convs, 9 i o + 9 o o weights (InstanceNorm2d has no parameters; the layernorm variant's
# GroupNorm(1, o) adds 2 o per norm, 4 o per block); a TransposeConvBlock(i, o) 4 i o (its
# InstanceNorm2d stays, even in the layernorm variant); the output 1x1 conv c + 1.
def _algoperf_unet_parameters(c: int, pools: int, layer_norm: bool) -> int:
    def block(i: int, o: int) -> int:
        return 9 * i * o + 9 * o * o + (4 * o if layer_norm else 0)

    total, ch = block(1, c), c
    for _ in range(pools - 1):
        total, ch = total + block(ch, 2 * ch), 2 * ch
    total += block(ch, 2 * ch)  # bottleneck
    for _ in range(pools):
        total += 4 * (2 * ch) * ch + block(2 * ch, ch)
        ch //= 2
    return total + c + 1  # the output 1x1 conv, with bias


PARAMETERS = {None: 7_756_097, "model_size": 7_692_929, "tanh": 7_756_097, "layernorm": 7_761_985}


def test_hand_count_gives_the_table() -> None:
    assert [_algoperf_unet_parameters(32, 4, False), _algoperf_unet_parameters(64, 3, False),
            _algoperf_unet_parameters(32, 4, True)] == [PARAMETERS[None], PARAMETERS["model_size"], PARAMETERS["layernorm"]]


@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_full_size_parameter_count_equals_algoperf(variant: str | None, data: Path) -> None:
    """The workload's own `build_model` at the config's full sizes, on the meta device."""
    workload = build_workload(workload_config("fastmri") | {"data_dir": str(data), "validation_volumes": 1}, variant)
    with torch.device("meta"):
        model = workload.build_model()
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[variant]
    *_, output_weight, output_bias = (name for name, _ in model.named_parameters() if name.startswith("up_conv."))
    last = 2 if variant == "model_size" else 3
    assert (output_weight, output_bias) == (f"up_conv.{last}.1.weight", f"up_conv.{last}.1.bias")  # AlgoPerf's names


def test_odd_sizes_are_padded_back_as_algoperf() -> None:
    """15 x 17 pools to 7 x 8; the upsampled 14 x 16 is reflect-padded to 15 x 17 (right/bottom)."""
    torch.manual_seed(0)
    model = UNet(num_channels=2, num_pool_layers=1).eval()
    assert model(torch.randn(2, 1, 15, 17)).shape == (2, 1, 15, 17)


@pytest.mark.parametrize("rules", ["v0.6", "v1.0"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[str(v) for v in VARIANTS])
def test_config_matches_algoperf_tables(rules: str, variant: str | None) -> None:
    table = json.loads((REPO / "harness" / "data" / f"algoperf_targets_{rules}.json").read_text())["workloads"]
    row = table["fastmri" + (f"_{variant}" if variant else "")]
    cfg = resolve_variant(workload_config("fastmri") | {"rules": rules}, variant)
    assert (row["base_workload"], row["variant"], row["metric"], row["direction"]) == ("fastmri", variant, "ssim", "max")
    assert (cfg["validation_target"], cfg["test_target"], cfg["max_runtime_sec"], cfg["step_hint"]) == (
        row["validation"], row["test"], row["max_runtime_sec"], row["step_hint"])
    assert cfg["eval_period_sec"] == 80  # AlgoPerf's eval_period_time_sec in both versions


def test_a_target_outside_the_ssim_range_is_one_line(data: Path) -> None:
    cfg = workload_config("fastmri")
    cfg["by_rules"]["v1.0"]["test_target"] = 1.2
    with pytest.raises(PacerUserError, match=r"test target 1.2 of the SSIM is outside \[-1, 1\] \(config: .*fastmri.yaml\)"):
        build_workload(cfg | TINY | {"data_dir": str(data)})


# --- preprocessing -------------------------------------------------------------------------


def algoperf_process_example(kspace: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AlgoPerf's `_process_example` (input_pipeline.py) step by step in NumPy, tf.signal's
    unnormalized ifft2d times sqrt(rows * cols) as there."""
    image = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace * mask[None, :], axes=(0, 1))), axes=(0, 1))
    image = image * np.sqrt(kspace.shape[0] * kspace.shape[1])
    w_from, h_from = (kspace.shape[0] - target.shape[0]) // 2, (kspace.shape[1] - target.shape[1]) // 2
    image = np.stack([image.real, image.imag], axis=-1)[w_from:w_from + target.shape[0], h_from:h_from + target.shape[1]]
    magnitude = np.sqrt((image ** 2).sum(-1))
    mean, std = magnitude.mean(), magnitude.std()
    return np.clip((magnitude - mean) / std, -6, 6), np.clip((target - mean) / std, -6, 6)


def test_undersampling_mask_at_the_real_width() -> None:
    """368 columns: int(0.08 * 368) = 29 central columns from (368 - 29 + 1) // 2 = 170, the
    rest each with probability (92 - 29) / (368 - 29): a quarter of the columns on average."""
    masks = torch.stack([undersampling_mask(368, torch.Generator().manual_seed(s)) for s in range(200)])
    assert (masks[:, 170:199] == 1).all() and set(masks.unique().tolist()) == {0.0, 1.0}
    assert masks.sum(1).mean() == pytest.approx(368 / 4, rel=0.02)
    assert not torch.equal(masks[0], masks[1])


def test_slices_are_preprocessed_as_algoperf(data: Path) -> None:
    slices = FastMRISlices(sorted((data / "knee_singlecoil_val").glob("*.h5")), mask_seed=0, per_slice_masks=False)
    assert len(slices) == 7
    inputs, targets, mean, std, volume_max = slices[4]  # the second volume's second slice
    with h5py.File(data / "knee_singlecoil_val" / "file1000001.h5") as f:
        kspace, target, expected_max = f["kspace"][1], f["reconstruction_esc"][1], f.attrs["max"]
    mask = undersampling_mask(KSPACE_SHAPE[1], torch.Generator().manual_seed(0)).numpy()
    expected_inputs, expected_targets = algoperf_process_example(kspace.astype(np.complex128), target.astype(np.float64), mask)
    assert inputs.shape == targets.shape == TARGET_SHAPE and inputs.dtype == torch.float32
    np.testing.assert_allclose(inputs.numpy(), expected_inputs, atol=1e-4)
    np.testing.assert_allclose(targets.numpy(), expected_targets, atol=1e-4)
    assert volume_max == pytest.approx(expected_max) and mean > 0 and std > 0
    assert torch.equal(slices[0][0], slices[0][0])  # evaluation masks are fixed


def test_a_fully_sampled_slice_reconstructs_its_target(data: Path) -> None:
    """With every column sampled the zero-filled input is the image itself: the FFT
    conventions (centering, orthonormal scaling, crop) agree with the targets'."""
    with h5py.File(data / "knee_singlecoil_train" / "file1000000.h5") as f:
        kspace, target = torch.from_numpy(f["kspace"][0]), torch.from_numpy(f["reconstruction_esc"][0])
    inputs, targets, mean, std = process_slice(kspace, target, torch.ones(KSPACE_SHAPE[1]))
    torch.testing.assert_close(inputs * std + mean, targets * std + mean, atol=1e-9, rtol=1e-4)


def test_training_masks_are_fixed_per_slice_and_differ_between_slices(data: Path) -> None:
    train = tiny_workload(data).datasets.train
    assert len(train) == SIZES["train"]
    assert torch.equal(train[2][0], train[2][0])
    again = FastMRISlices(train.files, mask_seed=1, per_slice_masks=True)
    assert any(not torch.equal(train[i][0], again[i][0]) for i in range(len(train)))


# --- metric and loss -----------------------------------------------------------------------


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """The textbook formula (Wang et al. 2004) as scikit-image's `structural_similarity`
    computes it with its defaults (7 x 7 uniform window, scipy's uniform_filter, sample
    covariances, K1 0.01, K2 0.03, border of 3 dropped), in float64 NumPy."""
    n = 49
    ux, uy = uniform_filter(x, 7), uniform_filter(y, 7)
    vx = (uniform_filter(x * x, 7) - ux * ux) * n / (n - 1)
    vy = (uniform_filter(y * y, 7) - uy * uy) * n / (n - 1)
    vxy = (uniform_filter(x * y, 7) - ux * uy) * n / (n - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def test_ssim_of_hand_made_images() -> None:
    """Identical images: 1. Constant images a and b (no variance): (2ab + C1) / (a^2 + b^2 + C1)
    with C1 = (0.01 L)^2: a = 0.2, b = 0.4, L = 1 -> 0.1601 / 0.2001; L = 2 -> 0.1604 / 0.2004.
    In float32 the filtered variances' rounding (~1e-9 against C2 = 9e-4) moves the 5th digit."""
    x = torch.rand(1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert float(structural_similarity(x, x, torch.tensor([1.0]))[0]) == pytest.approx(1.0, abs=1e-6)
    a, b = torch.full((2, 9, 9), 0.2, dtype=torch.float64), torch.full((2, 9, 9), 0.4, dtype=torch.float64)
    expected = [0.1601 / 0.2001, 0.1604 / 0.2004]
    assert structural_similarity(a, b, torch.tensor([1.0, 2.0], dtype=torch.float64)).tolist() == pytest.approx(expected, rel=1e-9)
    assert structural_similarity(a.float(), b.float(), torch.tensor([1.0, 2.0])).tolist() == pytest.approx(expected, rel=1e-4)  # as evaluated


def test_ssim_denormalizes_and_takes_the_volume_max_as_data_range() -> None:
    """Normalized images (z - mean) / std give the SSIM of z; a volume max of 0 reads as 1; the
    result is clipped to [-1, 1]."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 16, 16, generator=g, dtype=torch.float64), torch.rand(2, 16, 16, generator=g, dtype=torch.float64)
    mean, std, volume_max = torch.tensor([0.3, 0.5], dtype=torch.float64), torch.tensor([0.2, 2.0], dtype=torch.float64), torch.tensor([1.5, 0.0], dtype=torch.float64)
    per_slice = ssim((x - mean.view(-1, 1, 1)) / std.view(-1, 1, 1), (y - mean.view(-1, 1, 1)) / std.view(-1, 1, 1), mean, std, volume_max)
    assert per_slice.tolist() == pytest.approx([reference_ssim(x[0].numpy(), y[0].numpy(), 1.5), reference_ssim(x[1].numpy(), y[1].numpy(), 1.0)], rel=1e-9)
    assert ssim(x, -x, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), torch.full((2,), 1e-9, dtype=torch.float64)).ge(-1).all()


def test_ssim_equals_an_independent_implementation_of_the_textbook_formula() -> None:
    """Against scipy-based NumPy (scikit-image and torchmetrics are not installed), on
    structured and noisy images of odd and even sizes, in float32 as evaluated."""
    g = torch.Generator().manual_seed(2)
    for shape in ((20, 20), (17, 23)):
        x = torch.rand(shape, generator=g)
        y = 0.7 * x + 0.3 * torch.rand(shape, generator=g)
        got = float(structural_similarity(x[None], y[None], torch.tensor([1.0]))[0])
        assert got == pytest.approx(reference_ssim(x.double().numpy(), y.double().numpy(), 1.0), abs=1e-5)


def test_loss_on_hand_made_examples(data: Path) -> None:
    """Per slice the mean |output - target|: 0.5 and 2 (0, 2, 2, 4 over four pixels), the
    third masked out."""
    workload = tiny_workload(data)
    targets = torch.zeros(3, 2, 2)
    outputs = torch.stack([torch.full((2, 2), 0.5), torch.tensor([[0.0, -2.0], [2.0, 4.0]]), torch.full((2, 2), 9.0)])
    loss = workload.loss_fn(targets, outputs, torch.tensor([1.0, 1.0, 0.0]))
    assert float(loss["summed"]) == pytest.approx(2.5) and float(loss["n_valid_examples"]) == 2
    assert loss["per_example"].tolist() == [0.5, 2.0, 0.0]
    assert float(workload.loss_fn(targets[:2], outputs[:2])["n_valid_examples"]) == 2


class Identity(torch.nn.Module):
    """Reconstructs the zero-filled input unchanged (one parameter, for the optimizer's sake)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.scale


def test_eval_averages_the_ssim_of_every_slice_once(data: Path) -> None:
    """The zero-filled input as the reconstruction: each split's SSIM and loss are the means
    over its slices of ssim(inputs, targets) and |inputs - targets|, with 2-slice batches that
    divide neither 3 nor 7 nor 5."""
    workload = tiny_workload(data, eval_train_size=5)
    result = workload.eval_model(2, Identity(), None, 0, 0)
    for split, key in (("validation", "validation"), ("test", "test"), ("train", "eval_train")):
        slices = list(getattr(workload.datasets, key))
        inputs, targets, mean, std, volume_max = (torch.stack([torch.as_tensor(s[i]) for s in slices]) for i in range(5))
        assert result[f"{split}/num_examples"] == len(slices)
        assert result[f"{split}/ssim"] == pytest.approx(float(ssim(inputs, targets, mean, std, volume_max).mean()), rel=1e-6)
        assert result[f"{split}/loss"] == pytest.approx(float((inputs - targets).abs().mean()), rel=1e-6)


def test_synthetic_batch_trains(data: Path) -> None:
    workload = tiny_workload(data, "layernorm")
    model, _ = workload.init_model_fn(0, dropout_rate=0.1)
    batch = workload.synthetic_batch(2, seed=1)
    assert batch["inputs"].shape == batch["targets"].shape == (2, 320, 320) and batch["volume_max"].shape == (2,)
    outputs, _ = workload.model_fn(model, batch, None, ForwardPassMode.TRAIN, 0, update_batch_norm=True, dropout_rate=0.1)
    assert outputs.shape == (2, 320, 320)
    loss = workload.loss_fn(batch["targets"], outputs)
    (loss["summed"] / loss["n_valid_examples"]).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert {m.p for m in model.modules() if type(m).__name__ == "ChannelDropout"} == {0.1}
    types = workload.model_params_types
    assert types["down_sample_layers.0.conv_layers.0.weight"] is ParameterType.CONV_WEIGHT
    assert types["up_transpose_conv.0.layers.0.weight"] is ParameterType.CONV_WEIGHT
    assert (types["conv.conv_layers.1.weight"], types["conv.conv_layers.1.bias"]) == (ParameterType.LAYER_NORM_SCALE, ParameterType.LAYER_NORM_BIAS)
    assert types["up_conv.1.1.bias"] is ParameterType.BIAS  # the output conv (AlgoPerf's up_conv.3.1 at 4 levels)


# --- data-directory errors -----------------------------------------------------------------


def test_the_release_directory_names_are_read_too(data: Path, tmp_path: Path) -> None:
    for name in ("train", "val"):
        shutil.copytree(data / f"knee_singlecoil_{name}", tmp_path / f"singlecoil_{name}")
    datasets = tiny_workload(tmp_path).datasets
    assert [len(datasets.train), len(datasets.validation), len(datasets.test)] == [SIZES["train"], SIZES["validation"], SIZES["test"]]
    assert datasets.test.files[0] == tmp_path / "singlecoil_val" / "file1000001.h5"


def test_missing_or_malformed_data_is_one_line_naming_the_layout(data: Path, tmp_path: Path) -> None:
    layout = r"; expected AlgoPerf's layout \(datasets/dataset_setup.py --fastmri\): DATA_DIR/knee_singlecoil_train/\*.h5"
    with pytest.raises(PacerUserError, match=r"workload fastmri: .*nothing/knee_singlecoil_train is not a directory" + layout):
        tiny_workload(tmp_path / "nothing")
    broken = tmp_path / "broken"
    (broken / "knee_singlecoil_train").mkdir(parents=True)
    (broken / "knee_singlecoil_val").mkdir()
    with pytest.raises(PacerUserError, match=r"knee_singlecoil_train holds no .h5 file" + layout):
        tiny_workload(broken)
    rng = np.random.default_rng(0)
    write_volume(broken / "knee_singlecoil_train" / "a.h5", 1, rng)
    write_volume(broken / "knee_singlecoil_val" / "a.h5", 1, rng)
    with pytest.raises(PacerUserError, match=r"holds 1 volumes: none left for the test split after the first 1 \(validation\)" + layout):
        tiny_workload(broken)
    write_volume(broken / "knee_singlecoil_val" / "b.h5", 1, rng)
    with h5py.File(broken / "knee_singlecoil_train" / "a.h5", "a") as f:
        del f["reconstruction_esc"]
    with pytest.raises(PacerUserError, match=r"a.h5 lacks reconstruction_esc" + layout):
        tiny_workload(broken)
    with h5py.File(broken / "knee_singlecoil_train" / "a.h5", "a") as f:
        f.create_dataset("reconstruction_esc", data=np.zeros((2, 16, 16), np.float32))
    with pytest.raises(PacerUserError, match=r"kspace \(1, 32, 24\) and reconstruction_esc \(2, 16, 16\) disagree" + layout):
        tiny_workload(broken)
    (broken / "knee_singlecoil_train" / "a.h5").write_text("not hdf5")
    with pytest.raises(PacerUserError, match=r"a.h5 is not a readable HDF5 file"):
        tiny_workload(broken)
    write_volume(broken / "knee_singlecoil_train" / "a.h5", 1, rng)
    (broken / "knee_singlecoil_val" / "c.h5").write_text("only the first file of a directory is checked up front")
    workload = tiny_workload(broken)
    with pytest.raises(PacerUserError, match=r"c.h5 is not a readable HDF5 file.*" + layout):
        workload.make_datasets()


# --- DDP -----------------------------------------------------------------------------------


def evaluate_trained(data_dir: Path) -> dict[str, float]:
    workload = tiny_workload(data_dir)
    return workload.eval_model(4, trained(workload, 0.5), None, 0, 0)  # 2 per rank: padding on a rank


@pytest.mark.slow  # two fresh interpreters importing torch and the harness: ~30-60 s on a shared CPU
def test_two_gloo_processes_train_and_evaluate_as_one(data: Path, tmp_path: Path) -> None:
    two = on_two_gloo_processes(evaluate_trained, data, folder=tmp_path)
    one = evaluate_trained(data)
    assert one["validation/num_examples"] == SIZES["validation"]
    assert_same_results(two, one)
