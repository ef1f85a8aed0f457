"""Pacer: a time-to-target benchmark for neural-network training algorithms (PyTorch)."""
