"""Distributed tests dump every thread's stack on a hang (pytest-timeout's marks set the limits)."""

from __future__ import annotations

import faulthandler

faulthandler.enable()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local 2-CPU Ray for the whole session (about 3 s to start)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")),
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}, log_to_driver=False)
    yield ray
    ray.shutdown()
