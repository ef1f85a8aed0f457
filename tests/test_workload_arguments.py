"""Every workload checks its own settings when it is built: a bad size, rate, flag or choice, or
settings that do not fit together, is one line naming the key and value, before any data is
generated, read or downloaded (not an `error` record after training started). The settings
checked against the data itself are in tests/test_vision_workloads.py and
tests/test_torchvision_workloads.py, which have data to check against."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import PacerUserError
from harness.plugins.workloads import build_workload, workload_config

NAN = float("nan")
BAD_SETTINGS = [
    ("mnist1d_mlp", {"hidden": -1}, "hidden=-1 must be an integer >= 1"),
    ("mnist1d_mlp", {"depth": "abc"}, "depth='abc' must be an integer >= 1"),
    ("mnist1d_mlp", {"num_samples": 5}, "num_samples=5 must be an integer >= 10"),
    ("mnist1d_mlp", {"eval_train_size": 1.5}, "eval_train_size=1.5 must be an integer >= 1"),
    ("mnist1d_cnn", {"channels": 0}, "channels=0 must be an integer >= 1"),
    ("mnist1d_cnn", {"depth": 2.5}, "depth=2.5 must be an integer >= 1"),
    ("mnist1d_cnn", {"channels": 6}, "channels=6 must be a multiple of 4 for norm group"),
    ("mnist1d_cnn", {"norm": ["group"]}, "norm ['group'] is not one of group, none"),
    ("digits_cnn", {"num_train": -5}, "num_train=-5 must be an integer >= 1"),
    ("digits_cnn", {"num_train": 1795}, "num_train=1795 must leave validation and test examples (the data set has 1797)"),
    ("digits_cnn", {"channels": "16"}, "channels='16' must be an integer >= 1"),
    ("digits_cnn", {"bn_scale_init": NAN}, "bn_scale_init=nan must be a finite number"),
    ("markov_lm", {"heads": 0}, "heads=0 must be an integer >= 1"),
    ("markov_lm", {"width": 66}, "width=66 is not divisible by heads=4"),
    ("markov_lm", {"min_len": 40}, "need order < min_len <= seq_len + 1 (order=2, min_len=40, seq_len=32)"),
    ("markov_lm", {"concentration": 0}, "concentration=0 must be a finite number > 0"),
    ("markov_lm", {"vocab": 1.5}, "vocab=1.5 must be an integer >= 1"),
    ("markov_lm", {"post_ln": "yes"}, "post_ln='yes' must be true or false"),
    ("teacher_student", {"num_holdout": 0}, "num_holdout=0 must be an integer >= 1"),
    ("teacher_student", {"dim": True}, "dim=True must be an integer >= 1"),
    ("teacher_student", {"condition": 0.5}, "condition=0.5 must be a finite number >= 1"),
    ("teacher_student", {"noise_std": NAN}, "noise_std=nan must be a finite number >= 0"),
    ("mnist", {"hidden": 0}, "hidden=0 must be an integer >= 1"),
    ("mnist", {"validation_size": -1}, "validation_size=-1 must be an integer >= 1"),
    ("mnist", {"download": "no"}, "download='no' must be true or false"),
    ("fashion_mnist", {"channels": [16, 0]}, "channels[1]=0 must be an integer >= 1"),
    ("fashion_mnist", {"channels": 16}, "channels=16 must be a non-empty list of integers >= 1"),
    ("fashion_mnist", {"channels": [8] * 5}, "channels=[8, 8, 8, 8, 8] has 5 stages, but each halves the image and a 28-pixel image allows 4"),
    ("fashion_mnist", {"eval_train_size": NAN}, "eval_train_size=nan must be an integer >= 1"),
    ("cifar10", {"channels": [12, 24], "norm": "group"}, "channels=[12, 24] must each be at most 8 or a multiple of 8 for norm group"),
    ("cifar10", {"validation_size": "5000"}, "validation_size='5000' must be an integer >= 1"),
    ("cifar10_resnet18", {"width": 0}, "width=0 must be an integer >= 1"),
    ("cifar10_resnet18", {"validation_size": 1.5}, "validation_size=1.5 must be an integer >= 1"),
    ("cifar10_resnet18", {"compile": "no"}, "compile='no' must be true or false"),
    ("cifar10_resnet18", {"eval_train_size": 0}, "eval_train_size=0 must be an integer >= 1"),
    ("imagenet_resnet50", {"width": -1}, "width=-1 must be an integer >= 1"),
    ("imagenet_resnet50", {"bn_init_scale": NAN}, "bn_init_scale=nan must be a finite number"),
    ("imagenet_resnet50", {"image_size": "224"}, "image_size='224' must be an integer >= 1"),
    ("imagenet_resnet50", {"channels_last": 1}, "channels_last=1 must be true or false"),
    ("imagenet_vit", {"mixup_alpha": NAN}, "mixup_alpha=nan must be a finite number >= 0"),
    ("imagenet_vit", {"mixup_alpha": -0.2}, "mixup_alpha=-0.2 must be a finite number >= 0"),
    ("imagenet_vit", {"num_heads": 0}, "num_heads=0 must be an integer >= 1"),
    ("imagenet_vit", {"width": 100}, "width=100 is not divisible by num_heads=6"),
    ("imagenet_vit", {"width": 4}, "width=4 must be a multiple of 4 and >= 8 (sin-cos position embeddings)"),
    ("imagenet_vit", {"use_glu": "false"}, "use_glu='false' must be true or false"),
]


@pytest.mark.parametrize(("name", "settings", "words"), BAD_SETTINGS, ids=[f"{n}-{s}" for n, s, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_before_any_data(name: str, settings: dict[str, object], words: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cfg = workload_config(name) | {"data_dir": str(data_dir)}
    if "download" in cfg:
        cfg["download"] = False  # a check that came too late must not reach the network
    cfg |= settings
    with pytest.raises(PacerUserError) as error:
        build_workload(cfg)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"workload {name}: {words}"), message
    assert not data_dir.exists() or not any(data_dir.iterdir())
