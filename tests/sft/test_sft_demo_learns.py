"""The embedded SFT demo does what the README says: at its defaults (temperature-0.8 sampling
included) the builtin small model learns to reverse letters, on a CPU (about 80 s of training on 2 cores; timed in the README, not asserted here)."""

from __future__ import annotations

import pytest

from sft.loop import train
from sft_fakes import compose_sft

pytestmark = pytest.mark.timeout(300)


def test_the_demo_reaches_exact_answers(tmp_path):
    cfg = compose_sft(f"trainer.output_dir={tmp_path}", "trainer.loggers=[jsonl]", "validation.val_freq=0",
                      "validation.validate_before_training=false", "trainer.save_model=false")
    summary = train(cfg)
    assert summary["val/exact_match_end"] >= 0.9, summary
    # the same report pages as an RL run, each named in the summary's locations
    assert [f"report: {tmp_path / page}" for page in ("report.png", "report.html")] == [
        where for where in summary["locations"] if where.startswith("report:")]
