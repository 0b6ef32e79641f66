"""A SIGKILLed driver takes its Ray processes with it (core.workers.ray_reaper): Ray's GCS, raylet, agents
and workers are gone within seconds, where without the watcher the agents were seen alive long after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from core.workers.ray_reaper import start_time

pytest.importorskip("ray")

DRIVER = textwrap.dedent("""\
    import json, os, sys, time
    import ray
    from core.workers.ray_reaper import children_by_parent, descendants, watch_driver
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=sys.argv[1], log_to_driver=False)
    watch_driver()

    @ray.remote
    def hello():
        return os.getpid()

    ray.get(hello.remote())  # a worker under the raylet too
    time.sleep(2)  # the agents start beside it
    tree = children_by_parent()
    print(json.dumps(descendants(tree[os.getpid()], tree)), flush=True)
    time.sleep(600)
""")


@pytest.mark.timeout(180)
def test_a_sigkilled_driver_leaves_no_ray_process():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, ray_dir], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = json.loads(driver.stdout.readline())
        started = {pid: start_time(pid) for pid in pids}
        assert len(pids) >= 3  # GCS, raylet, the watcher, agents, a worker
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 15
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            alive = [pid for pid in pids if start_time(pid) is not None and start_time(pid) == started[pid]]
        assert alive == [], [open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:80] for pid in alive]
    finally:
        if driver.poll() is None:
            driver.kill()
        shutil.rmtree(ray_dir, ignore_errors=True)
