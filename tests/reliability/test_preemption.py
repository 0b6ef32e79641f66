"""SIGTERM and Ctrl-C stop a run after its current step, with a checkpoint, a one-line message and
exit code 128 + signal; the run then resumes where it stopped. A second signal exits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


HERE = Path(__file__).parent


def start_demo(run_dir: Path, *overrides) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "core.main", "+backend=cpu", "trainer.test_freq=0", "trainer.save_model=false",
           "trainer.report=false", f"trainer.output_dir={run_dir}", *overrides]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for_steps(run_dir: Path, proc: subprocess.Popen, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(steps_logged(run_dir)) < count:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run logged too few steps"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_finishes_the_step_checkpoints_and_resumes(tmp_path, signum, code):
    proc = start_demo(tmp_path, "trainer.total_steps=100000", "trainer.save_freq=1000")
    wait_for_steps(tmp_path, proc, 3)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "Traceback" not in stderr
    last = steps_logged(tmp_path)[-1]
    assert f"stopped by {signal.Signals(signum).name} after step {last}: checkpoint " in stderr
    assert (tmp_path / "checkpoints" / f"global_step_{last}").is_dir()  # saved although save_freq was not due
    resumed = start_demo(tmp_path, f"trainer.total_steps={last + 2}", "trainer.save_freq=1000", "trainer.resume=auto")
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr[-2000:]
    assert steps_logged(tmp_path) == list(range(1, last + 3))  # each step once


def test_a_second_signal_exits_at_once(tmp_path):
    # ~0.6 s steps (a slow reward), so both signals land inside one step
    proc = start_demo(tmp_path, "trainer.total_steps=100000", "trainer.save_freq=1000", "reward.reward_fn=broken_rewards:slow")
    wait_for_steps(tmp_path, proc, 1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # two signals at once would reach the handler as one
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    # 143 whether the second signal came mid-step or during the clean-up after it; never a traceback
    assert proc.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr


def test_sft_stops_at_sigterm_with_a_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sft.main", "+backend=cpu", "trainer.total_steps=100000", "trainer.save_freq=1000",
           "validation.val_freq=0", "validation.validate_before_training=false", "trainer.save_model=false",
           f"trainer.output_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_steps(tmp_path, proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    last = steps_logged(tmp_path)[-1]
    assert f"stopped by SIGTERM after step {last}: checkpoint " in stderr and "Traceback" not in stderr
    assert (tmp_path / "checkpoints" / f"global_step_{last}").is_dir()


def test_sigterm_to_one_torchrun_rank_stops_every_rank_after_the_same_step(tmp_path):
    sys.path.insert(0, str(HERE.parent / "distributed"))
    from dist_utils import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "sft.main", "+backend=cpu", "trainer.total_steps=100000", "trainer.save_freq=1000",
           "validation.val_freq=0", "validation.validate_before_training=false", "trainer.save_model=false",
           "trainer.batch_size=8", "trainer.dist_timeout_s=60", f"trainer.output_dir={tmp_path}"]
    ranks = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
                                   "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2"})
             for rank in (0, 1)]
    wait_for_steps(tmp_path, ranks[0], 2)
    ranks[1].send_signal(signal.SIGTERM)  # torchrun, Slurm: each rank is signalled at its own moment
    stderrs = [rank.communicate(timeout=120)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [143, 143], stderrs[0][-2000:] + stderrs[1][-2000:]
    last = steps_logged(tmp_path)[-1]
    assert f"stopped by SIGTERM after step {last}: checkpoint " in stderrs[0]  # rank 0 saw it through the vote
    assert all("Traceback" not in s for s in stderrs)
    assert (tmp_path / "checkpoints" / f"global_step_{last}").is_dir()


def test_a_signal_before_the_first_step_stops_at_once_and_frees_the_directory(tmp_path):
    """Model import, engine start and the step-0 validation take minutes on a real model: a stop must not
    wait for them (here a one-minute reward check in the step-0 validation)."""
    proc = start_demo(tmp_path, "trainer.total_steps=2", "trainer.val_before_train=true", "data.val_size=2",
                      "reward.reward_fn=broken_rewards:sleepy", "reward.timeout_s=null")
    deadline = time.monotonic() + 120
    while not (tmp_path / ".tandem.lock").exists():  # the run holds its directory: setup under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    time.sleep(1.0)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    assert time.monotonic() - signalled < 20  # not the minute the check would take
    assert "stopped by SIGTERM before the first step: nothing to save" in stderr and "Traceback" not in stderr
    assert not (tmp_path / ".tandem.lock").exists()
