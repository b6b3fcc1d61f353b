"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rait.data.benchmarks import data_dir

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def shared_data() -> Path:
    """The real data directory ($RAIT_DATA_DIR or ../shared/data); skips the test when it is absent."""
    root = data_dir()
    if root is None or not root.is_dir():
        pytest.skip("real data not available (set RAIT_DATA_DIR or provide ../shared/data)")
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny models on one thread (fastest for them, and the machine is shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
