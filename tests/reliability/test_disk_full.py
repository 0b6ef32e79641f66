"""A full disk while a checkpoint is written is one line naming it, and leaves no `.tmp-` directory; a full
disk at the report (after the model is saved) costs only the picture. torch's zip writer reports ENOSPC as
"unexpected pos", and DCP wraps it in a CheckpointException (a BaseException) holding each rank's failure."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from core.checkpoint import manager
from core.errors import TandemError


def test_a_checkpoint_that_fills_the_disk_is_named_and_removed(tmp_path):
    from torch.distributed.checkpoint.api import CheckpointException

    tmp, final = tmp_path / ".tmp-global_step_2", tmp_path / "global_step_2"
    tmp.mkdir()
    zip_writer = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    with pytest.raises(TandemError, match="no space left on the device writing checkpoint .*global_step_2"):
        with manager._removed_on_failure(tmp, 0, final):
            (tmp / "part").write_bytes(b"half")
            raise CheckpointException("save failed", {0: (zip_writer, None)})
    assert not tmp.exists()


def test_other_failures_pass_through_and_still_leave_nothing(tmp_path):
    tmp = tmp_path / ".tmp-global_step_3"
    tmp.mkdir()
    with pytest.raises(ValueError, match="a bug"):
        with manager._removed_on_failure(tmp, 0, tmp_path / "global_step_3"):
            raise ValueError("a bug")
    assert not tmp.exists()
    nested = RuntimeError("writing failed")
    nested.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert manager._disk_full(nested) and not manager._disk_full(RuntimeError("writing failed"))


def test_a_full_disk_at_the_report_costs_only_the_picture(tmp_path, monkeypatch, caplog):
    import json

    from core import report

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward/mean": 0.5}) + "\n")

    def full(series, out_path, title):
        out_path.write_bytes(b"half a png")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "plot", full)
    text = report.write_report(tmp_path)
    assert "reward/mean" in text and not (tmp_path / "report.png").exists()
    assert "report.png not written: no space left" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="needs a tmpfs")
def test_a_real_full_disk_while_checkpointing(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no permission)")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "core.main", "+backend=cpu", "trainer.total_steps=4", "trainer.save_freq=2",
             "trainer.test_freq=0", f"trainer.output_dir={disk}/run"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "no space left on the device writing checkpoint" in done.stderr and "Traceback" not in done.stderr
        assert not list((disk / "run" / "checkpoints").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
