"""Shared fixtures: one torch thread, no data downloads, results in a temporary folder."""

from __future__ import annotations

import os
import platform

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# The golden numbers (tests/golden) were written on an AMD EPYC with AVX2 kernels, as far as
# can be told: on an Intel Xeon, AVX-512 kernels sum in another order and 19 of 49 MNIST
# golden cases ended a few test images apart; pinned to AVX2, 1 did. ATen's, MKL's and
# oneDNN's code paths are pinned to AVX2, which every x86-64 CPU this runs on has, before torch
# loads.
if platform.machine().lower() in ("x86_64", "amd64"):
    for name, value in (("ATEN_CPU_CAPABILITY", "avx2"), ("MKL_CBWR", "AVX2"),
                        ("ONEDNN_MAX_CPU_ISA", "AVX2")):
        os.environ.setdefault(name, value)


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
