"""Shared set-up of the proxy tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny nets gain little from a second thread, and on a shared, loaded machine two OpenMP threads that
    spin-wait for each other ran these tests 10-20x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
