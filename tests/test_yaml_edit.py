"""`harness.experiments.yaml_edit`: values set in place, every other line (comments, order) kept."""

from __future__ import annotations

import pytest
import yaml

from harness.experiments.yaml_edit import set_in_text, set_values

CONFIG = """\
# A workload; the header comment stays.
name: toy
validation_target: 0.5   # replaced below
depth: 2
variants:
  wide:
    hidden: 512    # a variant's own comment
    validation_target: 0.6
    reference:
      step_sec: 0.1
      host: old
  deep:
    depth: 4
calibration:
  steps: 100
"""


def test_a_nested_value_under_variants_is_set_and_every_other_line_kept():
    text = set_in_text(CONFIG, ["variants", "wide"], {"validation_target": 0.75, "reference": {"step_sec": 0.2, "host": "new"}})
    assert yaml.safe_load(text)["variants"]["wide"] == {"hidden": 512, "validation_target": 0.75, "reference": {"step_sec": 0.2, "host": "new"}}
    changed = [line for line in text.splitlines() if line not in CONFIG.splitlines()]
    assert changed == ["    validation_target: 0.75", "      step_sec: 0.2", "      host: new"]
    assert [line for line in CONFIG.splitlines() if line not in text.splitlines()] == ["    validation_target: 0.6", "      step_sec: 0.1", "      host: old"]


def test_top_level_keys_keep_their_place_and_new_keys_go_at_the_end_of_their_block():
    text = set_in_text(CONFIG, [], {"validation_target": 0.55, "step_hint": 40})
    assert list(yaml.safe_load(text)) == ["name", "validation_target", "depth", "variants", "calibration", "step_hint"]
    assert text.splitlines()[0] == "# A workload; the header comment stays." and "    hidden: 512    # a variant's own comment" in text.splitlines()
    deep = set_in_text(CONFIG, ["variants", "deep"], {"step_hint": 40})
    assert yaml.safe_load(deep)["variants"]["deep"] == {"depth": 4, "step_hint": 40} and yaml.safe_load(deep)["calibration"] == {"steps": 100}


def test_a_missing_block_raises_and_the_file_is_replaced_whole(tmp_path):
    with pytest.raises(KeyError, match="variants.tall"):
        set_in_text(CONFIG, ["variants", "tall"], {"step_hint": 1})
    path = tmp_path / "toy.yaml"
    path.write_text(CONFIG)
    set_values(path, ["variants", "deep"], {"depth": 8})
    assert yaml.safe_load(path.read_text())["variants"]["deep"]["depth"] == 8 and [p.name for p in tmp_path.iterdir()] == ["toy.yaml"]


SUBMISSION = """\
# A submission; its comments stay.
name: toy
search_space: toy.json
# The default point, from a study:
default:
  learning_rate: 0.003
  weight_decay: 0.01   # goes with the old block
provenance:
  study: old.json
"""


def test_a_block_of_several_keys_replaces_the_old_block_and_a_long_string_stays_on_one_line():
    summary = "trial 3 of 16; reached the target on 2 of 3 study workloads (" + ", ".join(["a_long_variant_name"] * 4) + ")"
    text = set_in_text(SUBMISSION, [], {"default": {"learning_rate": 0.0123, "weight_decay": 1.0e-5}, "provenance": {"study": "new.json", "summary": summary}})
    assert text.splitlines()[:4] == SUBMISSION.splitlines()[:4]
    assert text.splitlines()[4:] == ["default:", "  learning_rate: 0.0123", "  weight_decay: 1.0e-05", "provenance:", "  study: new.json", f"  summary: {summary}"]
