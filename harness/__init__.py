"""Pacer: a time-to-target benchmark for neural-network training algorithms (PyTorch)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
"""The Hydra config tree. Here rather than in `harness.plugins.workloads`, which imports torch, so that
verbs that only read records (`pacer status`) find the root config without it."""
