"""Pacer's submissions: one module per training algorithm (AlgoPerf's five-function layout),
with its search space in `<name>.json` beside it and its config in `configs/submission/`."""
