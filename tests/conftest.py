"""Shared fixtures: one torch thread, no data downloads, results in a temporary folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def results(tmp_path, monkeypatch):
    """An empty results root, also exported as CLBENCH_RESULTS for subprocesses."""
    root = tmp_path / "results"
    monkeypatch.setenv("CLBENCH_RESULTS", str(root))
    return root
