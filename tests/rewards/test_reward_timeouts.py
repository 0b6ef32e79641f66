"""A reward call that hangs is abandoned at its deadline: the sample scores on_error_score, the batch
counts it in reward/timeouts, the other samples are scored, and nothing blocks the process's exit."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from core.errors import TandemError
from core.rewards.base import RewardInput
from core.rewards.scoring import RewardScorer


def hangs_on_hang(sample: RewardInput) -> float:
    if sample.response == "hang":
        time.sleep(60)
    return float(len(sample.response))


SAMPLES = [RewardInput(r) for r in ["a", "hang", "abc", "ab", "hang", "abcd"]]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_hung_calls_time_out_and_the_rest_is_scored(executor):
    scorer = RewardScorer(hangs_on_hang, workers=2, executor=executor, error_score=-1.0, timeout_s=0.5)
    try:
        start = time.monotonic()
        batch = scorer.score(SAMPLES)
        assert batch.scores.tolist() == [1.0, -1.0, 3.0, 2.0, -1.0, 4.0]
        assert (batch.timeouts, batch.errors) == (2, 0)
        assert batch.metrics["reward/timeouts"] == 2.0
        assert time.monotonic() - start < 20  # two deadlines, not two 60 s sleeps
        # the pool still has its full width afterwards
        assert scorer.score([RewardInput("xy")] * 4).scores.tolist() == [2.0] * 4
    finally:
        scorer.close()


def test_raise_on_error_stops_at_a_timeout():
    scorer = RewardScorer(hangs_on_hang, workers=1, raise_on_error=True, timeout_s=0.2)
    with pytest.raises(TandemError, match="timed out after 0.2 s on sample 1"):
        scorer.score(SAMPLES[:2])


def test_a_hung_thread_does_not_block_exit():
    code = (
        "import time\n"
        "from core.rewards.base import RewardInput\n"
        "from core.rewards.scoring import RewardScorer\n"
        "s = RewardScorer(lambda x: time.sleep(600) if x.response == 'x' else 1.0, workers=1, timeout_s=0.2)\n"
        "print(s.score([RewardInput('x'), RewardInput('ok')]).timeouts)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


def test_no_timeout_waits_for_slow_calls():
    scorer = RewardScorer(lambda s: (time.sleep(0.05), 1.0)[1], workers=2, timeout_s=None)
    assert scorer.score([RewardInput("x")] * 4).scores.tolist() == [1.0] * 4
    scorer.close()
