"""A run killed with SIGKILL resumes from its latest checkpoint and its next step equals the
uninterrupted run's (same seed): weights, optimizer, scheduler, RNG and data position restored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from core.checkpoint.manager import list_checkpoints
from core.rl.loop import train

pytestmark = pytest.mark.timeout(240)
ARGS = ("+backend=cpu", "trainer.total_steps=40", "trainer.save_freq=2", "data.prompt_batch_size=4",
        "rollout.n=4", "trainer.loggers=[jsonl]", "trainer.report=false", "trainer.save_model=false")
COMPARED = ("reward/mean", "actor/pg_loss", "actor/grad_norm", "actor/entropy", "response_length/mean")


def _metrics(run_dir) -> dict[int, dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # a resumed run drops the lines after its checkpoint and logs those steps again: each step once
    assert [m["step"] for m in lines] == list(range(1, len(lines) + 1))
    return {m["step"]: m for m in lines}


def test_sigkill_then_resume_matches_uninterrupted_run(compose_config, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "core.main", *ARGS, f"trainer.output_dir={killed}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not list_checkpoints(killed / "checkpoints") and time.monotonic() < deadline:
            time.sleep(0.05)
            assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    resumed_from = int(list_checkpoints(killed / "checkpoints")[-1].name.rsplit("_", 1)[1])
    next_step = resumed_from + 1

    overrides = [o for o in ARGS if not o.startswith("trainer.total_steps")]
    train(compose_config(*overrides, f"trainer.total_steps={next_step}", f"trainer.output_dir={killed}",
                         "trainer.resume=auto"))
    train(compose_config(*overrides, f"trainer.total_steps={next_step}", f"trainer.output_dir={tmp_path / 'whole'}"))
    got, expected = _metrics(killed)[next_step], _metrics(tmp_path / "whole")[next_step]
    for key in COMPARED:
        assert got[key] == expected[key], key
