"""`python -m core.main +backend=rocm` on this (GPU-less) machine: composes, then refuses clearly."""

from __future__ import annotations

import os
import subprocess
import sys

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=ENV)


def test_cfg_job_prints_the_rocm_settings():
    result = run("-m", "core.main", "+backend=rocm", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    backend = result.stdout[result.stdout.index("backend:"):]
    for line in ("name: rocm", "engine: vllm", "disable_custom_all_reduce: true", "sleep_fallback: resident",
                 "cudagraph_capture_sizes:\n    - 1\n    - 2\n    - 4\n    - 8\n    - 16\n    - 32\n    - 64"):
        assert line in backend


def test_running_here_fails_with_the_probe_reason():
    result = run("-m", "core.main", "+backend=rocm", "trainer.total_steps=1")
    assert result.returncode == 2
    assert "tandem: error: backend 'rocm' cannot run here: torch" in result.stderr
    assert "not a ROCm (HIP) build" in result.stderr
    assert "Traceback" not in result.stderr
