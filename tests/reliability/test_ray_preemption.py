"""Under the Ray launcher, SIGTERM to a worker or to the controller stops the run after its step with a
checkpoint and exit 143; the run resumes under Ray, and no process of the Ray it started outlives it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from test_preemption import steps_logged, wait_for_steps

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay under 108 characters
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_ray_run(run_dir, ray_tmp, *overrides) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_TMPDIR": ray_tmp}
    cmd = [sys.executable, "-m", "core.main", "+backend=cpu", "trainer.launcher=ray", "trainer.test_freq=0",
           "trainer.save_model=false", "trainer.report=false", f"trainer.output_dir={run_dir}", *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def still_alive(processes, grace_s: float = 5.0) -> list:
    deadline = time.monotonic() + grace_s
    while True:
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.parametrize("target", ["worker", "controller"])
def test_sigterm_under_ray_checkpoints_resumes_and_leaves_no_ray_behind(tmp_path, ray_tmp, target):
    proc = start_ray_run(tmp_path, ray_tmp, "trainer.total_steps=100000", "trainer.save_freq=1000")
    wait_for_steps(tmp_path, proc, 2)
    ray_processes = psutil.Process(proc.pid).children(recursive=True)
    if target == "worker":
        worker = next(p for p in ray_processes if "_WorkerActor" in " ".join(p.cmdline()))
        worker.send_signal(signal.SIGTERM)  # the worker finishes its step and asks the controller to stop
    else:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    last = steps_logged(tmp_path)[-1]
    assert f"stopped by SIGTERM after step {last}: checkpoint " in stderr
    assert still_alive(ray_processes) == []

    resumed = start_ray_run(tmp_path, ray_tmp, f"trainer.total_steps={last + 1}", "trainer.resume=auto")
    wait_for_steps(tmp_path, resumed, last)  # Ray is up again
    ray_processes = psutil.Process(resumed.pid).children(recursive=True)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr[-2000:]
    assert steps_logged(tmp_path) == list(range(1, last + 2))
    assert still_alive(ray_processes) == []  # a run that ends well shuts its Ray down too
