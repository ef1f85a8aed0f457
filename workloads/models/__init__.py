"""Model definitions shared by several workloads."""
