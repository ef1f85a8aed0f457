"""Shared fixtures: a tiny fake workload and fake submissions for testing the runner's rules."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tests run tiny models, where more threads only add overhead (and oversubscribe a shared CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
