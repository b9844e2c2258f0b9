"""Shared fixtures. Tests never use the network: DEEPNN_OFFLINE=1; data comes from DEEPNN_DATA
(`.ci/run` and the Makefile point it at ../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ["DEEPNN_OFFLINE"] = "1"
_shared = Path(__file__).resolve().parents[2] / "shared" / "data"
if not os.environ.get("DEEPNN_DATA") and _shared.is_dir():
    os.environ["DEEPNN_DATA"] = str(_shared)

# One thread: the suite is many small ops, and two OpenMP threads on a loaded 2-core machine
# slow each other down 10-40x (seen while developing). CLI subprocesses keep the default.
torch.set_num_threads(1)
# `make test` runs the suite on 2 processes (pytest-xdist, -n 2): the command-line runs the tests start as
# subprocesses then get one thread each too, or 2 processes x 2 threads would oversubscribe the 2 cores.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder with the real Fashion-MNIST files."""
    from deepnn.data import fashion_mnist

    return fashion_mnist.locate(allow_download=False)


@pytest.fixture(scope="session")
def fmnist():
    """The real dataset (normalised tensors, seeded validation split), loaded once."""
    from deepnn.data import load_image_data

    return load_image_data("fashion_mnist", val_size=5000, seed=0)
