"""Data readers shared by several workloads."""
