"""Pacer's workloads: one module per workload family, each with `configs/workload/<name>.yaml`."""
