"""A run directory is never mixed: one run holds it (a lock naming the owner, stale locks taken over),
an existing run is not overwritten without trainer.resume, and a resume before the first checkpoint
logs every step once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from core.errors import TandemError
from core.tracking.run_dir import LOCK, claim_run_dir


def test_a_second_run_is_refused_naming_the_owner(tmp_path):
    with claim_run_dir(tmp_path, "never"):
        owner = (tmp_path / LOCK).read_text()
        assert owner == f"{socket.gethostname()} {os.getpid()}"
        with pytest.raises(TandemError, match=f"in use by another run .*{os.getpid()}"):
            with claim_run_dir(tmp_path, "auto"):
                pass
    assert not (tmp_path / LOCK).exists()  # released on exit


def test_a_stale_lock_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK).write_text(f"{socket.gethostname()} {dead.stdout.strip()}")
    with caplog.at_level("WARNING", logger="tandem"), claim_run_dir(tmp_path, "never"):
        assert (tmp_path / LOCK).read_text().endswith(str(os.getpid()))
    assert "a run that is gone" in caplog.text


def test_an_existing_run_needs_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(TandemError, match="already holds a run; continue it with trainer.resume=auto"):
        with claim_run_dir(tmp_path, "never"):
            pass
    with claim_run_dir(tmp_path, "auto"):
        pass


def run(tmp_path, *overrides, program="core.main"):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    quiet = (["trainer.test_freq=0", "trainer.report=false"] if program == "core.main" else
             ["validation.val_freq=0", "validation.validate_before_training=false"])
    cmd = [sys.executable, "-m", program, "+backend=cpu", *quiet, "trainer.save_model=false",
           f"trainer.output_dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)


def test_resume_before_the_first_checkpoint_logs_each_step_once(tmp_path):
    first = run(tmp_path, "trainer.total_steps=3", "trainer.save_freq=0")  # as if killed: no checkpoint
    assert first.returncode == 0, first.stderr[-2000:]
    again = run(tmp_path, "trainer.total_steps=4", "trainer.resume=auto")
    assert again.returncode == 0, again.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    refused = run(tmp_path, "trainer.total_steps=2")
    assert refused.returncode == 2 and "already holds a run" in refused.stderr


def test_sft_resume_logs_each_step_once(tmp_path):
    first = run(tmp_path, "trainer.total_steps=3", "trainer.save_freq=2", program="sft.main")
    assert first.returncode == 0, first.stderr[-2000:]
    shutil.rmtree(tmp_path / "checkpoints" / "global_step_3")  # as if killed after step 3, before its checkpoint
    again = run(tmp_path, "trainer.total_steps=4", "trainer.save_freq=2", "trainer.resume=auto", program="sft.main")
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "train/loss" in row] == [1, 2, 3, 4]
    assert [row["step"] for row in rows if "val/loss" in row] == [4]  # the first run's step-3 validation is gone


def test_resume_under_another_config_is_refused_naming_the_keys(tmp_path):
    config = {"model": {"path": "a"}, "data": {"seed": 0}, "trainer": {"lr": 1.0}}
    with claim_run_dir(tmp_path, "auto", config):
        pass
    with claim_run_dir(tmp_path, "auto", {**config, "trainer": {"lr": 2.0}}):  # trainer keys may change
        pass
    other = {**config, "model": {"path": "b"}, "data": {"seed": 1}}
    with pytest.raises(TandemError, match=r"another config \(data.seed: 0 -> 1, model.path: 'a' -> 'b'\)"):
        with claim_run_dir(tmp_path, "auto", other):
            pass
    with claim_run_dir(tmp_path, "auto", other, force=True):
        pass
    assert json.loads((tmp_path / "config.json").read_text())["model"]["path"] == "b"


@pytest.mark.parametrize("below", ["", "sub/run"])
def test_an_output_dir_that_is_a_file_is_named(tmp_path, below):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(TandemError, match=f"{blocker} is a file, not a directory"):
        with claim_run_dir(blocker / below if below else blocker, "never"):
            pass


def test_an_output_dir_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only mount (root ignores chmod)
    with pytest.raises(TandemError, match="is not writable"):
        with claim_run_dir(tmp_path / "run", "never"):
            pass
