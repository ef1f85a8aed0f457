"""Heavy-ball momentum (submissions.momentum) at a fixed tiny global batch size, so that tests
of large workloads run one real step through the real loaders in milliseconds. Used as
`submission.module=fixed_batch_submission` (tests/ on the path)."""

from submissions.momentum import data_selection, init_optimizer_state, update_params

BATCH_SIZE = 4

__all__ = ["data_selection", "get_batch_size", "init_optimizer_state", "update_params"]


def get_batch_size(workload_name: str) -> int:
    return BATCH_SIZE
