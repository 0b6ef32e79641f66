"""core.tracking.progress.Heartbeat: a piped run says which phase it is in when one runs long."""

from __future__ import annotations

import logging
import time

from tqdm import tqdm

from core.tracking.progress import Heartbeat


def test_a_long_phase_is_reported_in_plain_lines_and_a_short_one_is_not(caplog):
    beat = Heartbeat(tqdm(range(1, 3), disable=True), every_s=0.3, enabled=True)
    with caplog.at_level(logging.INFO, logger="tandem"):
        beat.set_postfix_str("eval")
        time.sleep(0.9)  # before training: two beats at least
        for step in beat:
            beat.set_postfix_str("gen")
            time.sleep(0.05 if step == 1 else 0.9)
        beat.close()
        time.sleep(0.4)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("before training: eval for ") for line in lines), lines
    assert any(line.startswith("step 2/2: gen for ") for line in lines) and not any("step 1/2" in l for l in lines)
    count = len(lines)
    time.sleep(0.5)
    assert len(caplog.records) == count  # closed: silent


def test_a_terminal_gets_no_lines(caplog):
    beat = Heartbeat(tqdm(range(1), disable=True), every_s=0.1, enabled=False)
    with caplog.at_level(logging.INFO, logger="tandem"):
        beat.set_postfix_str("gen")
        time.sleep(0.3)
        beat.close()
    assert caplog.records == []
