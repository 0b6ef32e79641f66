"""RunSession: the run management RL and SFT share (their loops' tests run it end to end)."""

from __future__ import annotations

import signal

import pytest
from omegaconf import OmegaConf

from core.run.session import RunSession
from core.run.preemption import Preempted


def _cfg(run_dir, **trainer):
    return OmegaConf.create({"trainer": {
        "output_dir": str(run_dir), "resume": "never", "resume_force": False, "loggers": ["jsonl"],
        "project_name": "tandem", "experiment_name": None, "log_every": 1, "save_freq": 2,
        "save_model": False, "report": True, **trainer}})


class Workers:
    def __init__(self):
        self.saved = []

    def save_checkpoint(self, where, step, loop_state):
        self.saved.append((step, loop_state))
        return f"{where}/global_step_{step}"


def test_every_save_freq_steps_the_last_if_asked_and_at_a_stop(tmp_path):
    workers = Workers()
    with RunSession(_cfg(tmp_path / "run"), save_last_step=True) as session:
        session.preemption.begin_steps()
        for step in (1, 2, 3):
            session.log({"loss": 1.0 / step}, step)
            session.checkpoint_if_due(step, workers, lambda: {"at": step}, last_step=step == 3)
    assert [step for step, _ in workers.saved] == [2, 3]
    assert workers.saved[0][1] == {"at": 2}  # the loop's state is read when the checkpoint is written
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3

    workers = Workers()
    with pytest.raises(Preempted, match="after step 1: checkpoint .*global_step_1") as stopped:
        with RunSession(_cfg(tmp_path / "stopped")) as session:
            session.preemption.begin_steps()
            session.preemption.signum = signal.SIGTERM  # as the handler records a SIGTERM mid-step
            session.checkpoint_if_due(1, workers, dict)
    assert stopped.value.exit_code == 143 and [step for step, _ in workers.saved] == [1]


def test_only_the_main_rank_writes_and_a_run_that_failed_at_once_leaves_nothing(tmp_path):
    with RunSession(_cfg(tmp_path / "rank1"), main_rank=False) as session:
        session.log({"loss": 1.0}, 1)
        assert session.tracker is None and session.write_report({}) == {}
    assert not (tmp_path / "rank1").exists()
    with pytest.raises(RuntimeError):
        with RunSession(_cfg(tmp_path / "failed")):
            raise RuntimeError("the model did not load")
    assert not (tmp_path / "failed").exists()


def test_a_tracker_that_cannot_start_leaves_no_directory(tmp_path):
    with pytest.raises(Exception, match="neptune"):
        with RunSession(_cfg(tmp_path / "run", loggers=["neptune"])):
            pass
    assert list(tmp_path.iterdir()) == []
