"""Shared fixtures: one local Ray session per test session (start-up costs seconds)."""

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that asks for it.

    Tests that need their own cluster (ray.cluster_utils.Cluster with fake GPUs) must run it
    in a subprocess, because one process holds one Ray connection at a time.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: OpenMP threads spin against other processes
    (measured 30x slower), so torch tests run single-threaded and restore the setting."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
